using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Data.Segmentation;
using VptSharp.Segmentation;

namespace VptSharp.Inference;

/// <summary>A segmentation task being served: its file and model (used by one request at a time).</summary>
public sealed record ServedSegmentationTask(string Name, string Path, SegmentationArtifact Artifact, SegmentationModel Model, DateTime ModifiedUtc, long Length)
{
    internal readonly object Gate = new();
    /// <summary>Set under <see cref="Gate"/> when a rescan replaced or removed the task and disposed its model.</summary>
    internal bool Retired;
}

/// <summary>
/// The segmentation task files (<see cref="SegmentationArtifact"/>) of a served folder, on the server's shared frozen
/// backbone (name = file name without ".vpt"); classification files in the same folder are <see cref="TaskStore"/>'s.
/// Each file is judged alone: a task that trains backbone tensors (bias, full), was trained on other weights or at
/// another image size is listed as rejected with the reason, and the others keep serving.
/// </summary>
public sealed class SegmentationStore(LoadedBackbone backbone, string folder) : IDisposable
{
    readonly object sync = new();
    Dictionary<string, ServedSegmentationTask> tasks = new();
    Dictionary<string, RejectedTask> rejected = new();

    public event Action<string>? Log;
    public IReadOnlyDictionary<string, ServedSegmentationTask> Tasks { get { lock (sync) return new Dictionary<string, ServedSegmentationTask>(tasks); } }
    public IReadOnlyCollection<RejectedTask> Rejected { get { lock (sync) return rejected.Values.ToList(); } }

    readonly object rescanGate = new();

    /// <summary>Loads new and changed segmentation task files, drops removed ones; a rescan already running makes this one skip.</summary>
    public int Rescan()
    {
        if (!Monitor.TryEnter(rescanGate)) return 0;
        try { return RescanOnce(); }
        finally { Monitor.Exit(rescanGate); }
    }

    int RescanOnce()
    {
        if (!Directory.Exists(folder)) throw new InputFileException(folder, "no such task folder", setting: "tasks-folder");
        var files = Directory.EnumerateFiles(folder, "*.vpt").ToDictionary(f => Path.GetFileNameWithoutExtension(f), f => f);
        Dictionary<string, ServedSegmentationTask> current;
        lock (sync) current = new(tasks);
        var next = new Dictionary<string, ServedSegmentationTask>();
        var nextRejected = new Dictionary<string, RejectedTask>();
        int changes = 0;
        foreach (var (name, path) in files)
        {
            var info = new FileInfo(path);
            if (current.TryGetValue(name, out var have) && have.ModifiedUtc == info.LastWriteTimeUtc && have.Length == info.Length) { next[name] = have; continue; }
            // Only regular, non-empty files are opened (a FIFO would block); the header says whether it is ours, and is
            // read again only when the file changes.
            if (info.LinkTarget is not null || info.Length == 0 || info.Length > TaskStore.MaxTaskFileBytes) continue;
            if (notOurs.TryGetValue(name, out var seen) && seen == (info.LastWriteTimeUtc, info.Length)) continue;
            if (!SegmentationArtifact.IsSegmentationTask(path)) { notOurs[name] = (info.LastWriteTimeUtc, info.Length); continue; }
            lock (sync)
                if (rejected.TryGetValue(name, out var r) && File.GetLastWriteTimeUtc(path) <= stamp.GetValueOrDefault(name)) { nextRejected[name] = r; continue; }
            SegmentationArtifact? art = null;
            try
            {
                art = SegmentationArtifact.Load(path);
                if (art.Tensors.Keys.Any(k => k.StartsWith("backbone.")))
                    throw new ArgumentException($"method {art.Metadata.Method} trains backbone tensors; serving it would overwrite the backbone the other tasks share (serve it from its own process)");
                if (art.Metadata.Preprocessing.ImageSize != backbone.Config.ImageSize)
                    throw new ArgumentException($"task takes {art.Metadata.Preprocessing.ImageSize}-pixel crops but the shared backbone runs at {backbone.Config.ImageSize}");
                next[name] = new ServedSegmentationTask(name, path, art, art.Attach(backbone, path), info.LastWriteTimeUtc, info.Length);
                changes++;
                Log?.Invoke($"loaded {name} (segmentation, {art.Metadata.Method}, {art.Metadata.Classes.Length} classes)");
            }
            catch (Exception e) // one file never stops the rescan (libtorch refusing an allocation is an ExternalException)
            {
                if (art is not null) foreach (var t in art.Tensors.Values) t.Dispose();
                string reason = e.Message.Split('\n')[0];
                nextRejected[name] = new RejectedTask(name, path, reason);
                stamp[name] = info.LastWriteTimeUtc;
                Log?.Invoke($"refused {path}: {reason}");
            }
        }
        List<ServedSegmentationTask> retired;
        lock (sync)
        {
            retired = tasks.Values.Where(t => !next.TryGetValue(t.Name, out var n) || !ReferenceEquals(n, t)).ToList();
            changes += tasks.Keys.Except(next.Keys).Count();
            tasks = next;
            rejected = nextRejected;
        }
        foreach (var t in retired) lock (t.Gate) { t.Retired = true; t.Model.Dispose(); } // never the shared backbone
        return changes;
    }

    readonly Dictionary<string, DateTime> stamp = new();
    /// <summary>Files whose header said "not a segmentation task", as (modified, length) when read.</summary>
    readonly Dictionary<string, (DateTime, long)> notOurs = new();

    /// <summary>
    /// The label mask of an image (sliding window at the task's stride), at the image's size. The window keeps about
    /// 3 × classes × pixels floats over the image padded to at least the crop size on each side; an image over
    /// <see cref="MaxWindowBytes"/> of them is segmented at the largest size that fits (aspect kept) and its mask scaled
    /// back by nearest neighbour, as mmseg tests at a fixed scale.
    /// </summary>
    public LabelMask Segment(ServedSegmentationTask task, RgbImage image)
    {
        string name = task.Name;
        // A request may hold a task that a rescan replaced while it waited: it runs on the replacement instead.
        for (int attempt = 0; attempt < 4; attempt++)
        {
            var md = task.Artifact.Metadata;
            double scale = WindowScale(image.Width, image.Height, task.Model.CropSize, md.Classes.Length, MaxWindowBytes);
            var input = scale >= 1 ? image : ImageTransform.Resize(image, Math.Max(1, (int)(image.Width * scale)), Math.Max(1, (int)(image.Height * scale)));
            lock (task.Gate)
                if (!task.Retired)
                    return SegmentationInference.Predict(task.Model, input, md.Preprocessing, new SlideOptions { Stride = md.Stride }).Resize(image.Width, image.Height);
            if (!Tasks.TryGetValue(name, out var now)) break;
            task = now;
        }
        throw new KeyNotFoundException($"segmentation task {name} was removed while the request waited");
    }

    /// <summary>The largest scale ≤ 1 at which a <paramref name="width"/> × <paramref name="height"/> image's window (3
    /// float planes per class over the image padded to the crop on each side) stays within <paramref name="maxBytes"/>.</summary>
    public static double WindowScale(int width, int height, int crop, int classes, double maxBytes)
    {
        double perPixel = 12.0 * classes;
        double Bytes(double s) => perPixel * Math.Max(width * s, crop) * Math.Max(height * s, crop);
        double scale = Math.Min(1, Math.Sqrt(maxBytes / (perPixel * width * height)));
        // A long thin image keeps its short side padded to the crop: then only the long side can shrink the window.
        if (Bytes(scale) > maxBytes) scale = Math.Min(scale, maxBytes / (perPixel * crop * Math.Max(width, height)));
        return scale;
    }

    /// <summary>Most memory one request's sliding window may hold (1 GiB).</summary>
    public double MaxWindowBytes { get; init; } = 1L << 30;

    public void Dispose()
    {
        lock (sync)
        {
            foreach (var t in tasks.Values) t.Model.Dispose();
            tasks.Clear();
        }
    }
}
