using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Tuning;

namespace VptSharp.Inference;

/// <summary>A task file loaded onto the shared backbone, ready to serve.</summary>
public sealed record ServedTask(string Name, string Path, TaskArtifact Artifact, PromptedModel Model, DateTime ModifiedUtc, long Length)
{
    public IReadOnlyList<string> Classes => Artifact.Metadata.Classes;
    public Preprocessing Preprocessing => Artifact.Metadata.Preprocessing;
}

/// <summary>A task file that was found but not served, and why.</summary>
public sealed record RejectedTask(string Name, string Path, string Reason);

/// <summary>
/// The task files of one folder attached to one shared frozen backbone (name = file name without ".vpt").
/// <see cref="Rescan"/> loads new and changed files and drops deleted ones, so files can be hot-swapped while serving.
/// Refused: files bound to another backbone (sha256), unreadable files, and methods that train backbone tensors
/// (partial, bias, full, …): attaching those would overwrite the weights every other task shares.
/// Tasks whose method is an exact VPT-prefix (VPT-deep, linear, mlp-k, …) also go into a <see cref="MultiTaskEngine"/>,
/// rebuilt after every change, so a batch mixing them costs one backbone pass; the others run through their own model.
/// All model use goes through <see cref="Use"/>, which excludes a concurrent swap.
/// </summary>
public sealed class TaskStore(LoadedBackbone backbone, string folder, TorchSharp.torch.ScalarType engineDtype = TorchSharp.torch.ScalarType.Float32) : IDisposable
{
    // sync guards model use against disposal (a batch holds it for its forward pass). The three maps are published
    // whole and never changed afterwards, so listings and health checks read them without it, never waiting for a batch.
    readonly object sync = new();
    volatile Dictionary<string, ServedTask> tasks = new();
    volatile Dictionary<string, RejectedTask> rejected = new();
    MultiTaskEngine? engine;
    volatile Dictionary<string, int> engineIndex = new();

    /// <summary>What a batch sees: the tasks, and the engine with each engine task's index.</summary>
    public sealed record View(IReadOnlyDictionary<string, ServedTask> Tasks, MultiTaskEngine? Engine, IReadOnlyDictionary<string, int> EngineIndex);

    public event Action<string>? Log;
    public LoadedBackbone Backbone => backbone;
    public string Folder => folder;

    public IReadOnlyDictionary<string, ServedTask> Tasks => tasks;
    public IReadOnlyCollection<RejectedTask> Rejected => rejected.Values.ToList();

    /// <summary>Runs <paramref name="body"/> with the current tasks while no reload can dispose them.</summary>
    public T Use<T>(Func<View, T> body) { lock (sync) return body(new View(tasks, engine, engineIndex)); }

    /// <summary>Names of the tasks that run through the one-pass multi-task engine.</summary>
    public IReadOnlyCollection<string> EngineTasks => engineIndex.Keys.ToList();

    /// <summary>Brings the store in line with the folder; returns how many tasks were added, replaced or removed.</summary>
    public int Rescan()
    {
        // A timer may fire again while a slow rescan is still loading: the later one simply skips.
        if (!Monitor.TryEnter(rescanGate)) return 0;
        try { return RescanOnce(); }
        finally { Monitor.Exit(rescanGate); }
    }

    readonly object rescanGate = new();

    int RescanOnce()
    {
        if (!Directory.Exists(folder)) throw new InputFileException(folder, "no such task folder", setting: "tasks-folder");
        var files = Directory.EnumerateFiles(folder, "*.vpt").ToDictionary(f => System.IO.Path.GetFileNameWithoutExtension(f), f => f);
        int changes = 0;
        // Load outside the lock (it reads files); swap under it.
        var loaded = new Dictionary<string, ServedTask>();
        var newlyRejected = new Dictionary<string, RejectedTask>();
        var current = tasks;
        foreach (var (name, path) in files)
        {
            var info = new FileInfo(path);
            if (current.TryGetValue(name, out var have) && have.ModifiedUtc == info.LastWriteTimeUtc && have.Length == info.Length) continue;
            if (rejected.TryGetValue(name, out _) && !ChangedSinceRejected(name, info)) continue;
            // Each file is judged alone: whatever one file does (bad metadata, a FIFO, a huge size, a native error)
            // ends in its own rejection, never in the rescan or in another task.
            TaskArtifact? art = null;
            try
            {
                if (WhyNotARegularFile(info) is string why) throw new CheckpointException($"{path}: {why}");
                if (segmentationFiles.TryGetValue(name, out var seen) && seen == (info.LastWriteTimeUtc, info.Length)) continue;
                if (VptSharp.Segmentation.SegmentationArtifact.IsSegmentationTask(path)) // served by SegmentationStore; its header is read again only when it changes
                {
                    segmentationFiles[name] = (info.LastWriteTimeUtc, info.Length);
                    continue;
                }
                art = TaskArtifact.Load(path);
                if (art.Tensors.Keys.Any(k => k.StartsWith("backbone.")))
                    throw new ArgumentException($"method {art.Metadata.Method} trains backbone tensors; serving it would overwrite the backbone the other tasks share (serve it from its own process)");
                if (art.Metadata.Preprocessing.ImageSize != backbone.Model.ImageSize)
                    throw new ArgumentException($"task takes {art.Metadata.Preprocessing.ImageSize}-pixel images but the shared backbone runs at {backbone.Model.ImageSize}; " +
                        $"serve it from a server whose backbone runs at {art.Metadata.Preprocessing.ImageSize}");
                var model = art.Attach(backbone, path);
                loaded[name] = new ServedTask(name, path, art, model, info.LastWriteTimeUtc, info.Length);
            }
            catch (Exception e)
            {
                if (art is not null) foreach (var t in art.Tensors.Values) t.Dispose(); // a refused file's tensors are freed now, not at some GC
                string reason = e is BackboneMismatchException or VptException or ArgumentException or IOException or InvalidDataException
                    or System.Text.Json.JsonException or UnauthorizedAccessException or BadImageException
                    ? FirstLine(e.Message) : $"cannot be loaded ({e.GetType().Name}: {FirstLine(e.Message)})";
                newlyRejected[name] = new RejectedTask(name, path, reason);
                rejectedStamp[name] = (info.LastWriteTimeUtc, info.Length);
                Log?.Invoke($"refused {path}: {reason}");
            }
        }
        var retired = new List<PromptedModel>();
        lock (sync)
        {
            var next = new Dictionary<string, ServedTask>(tasks);
            foreach (var name in next.Keys.Except(files.Keys).ToList()) { retired.Add(next[name].Model); next.Remove(name); changes++; Log?.Invoke($"removed {name}"); }
            foreach (var (name, t) in loaded)
            {
                if (next.TryGetValue(name, out var old)) retired.Add(old.Model);
                next[name] = t; changes++;
                Log?.Invoke($"loaded {name} ({t.Artifact.Metadata.Method}, {t.Classes.Count} classes)");
            }
            var nextRejected = rejected.Where(kv => files.ContainsKey(kv.Key) && !loaded.ContainsKey(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
            // A broken or foreign replacement is refused; a good earlier version of that task keeps serving.
            foreach (var (name, r) in newlyRejected) nextRejected[name] = r;
            tasks = next;
            rejected = nextRejected;
            foreach (var m in retired) m.Dispose(); // disposing a task model never touches the shared backbone
            if (changes > 0 || engine is null) RebuildEngine();
        }
        return changes;
    }

    readonly Dictionary<string, (DateTime, long)> rejectedStamp = new();
    readonly Dictionary<string, (DateTime, long)> segmentationFiles = new();

    /// <summary>Largest task file loaded (512 MiB; a served task holds prompts and a head, not a backbone).</summary>
    public const long MaxTaskFileBytes = 512L << 20;

    /// <summary>Checked from the directory entry, before opening: opening a FIFO would block the rescan for good.
    /// FIFOs, sockets and devices report length 0; symbolic links are judged by their target.</summary>
    static string? WhyNotARegularFile(FileInfo info)
    {
        FileSystemInfo target = info;
        if (info.LinkTarget is not null)
        {
            try { target = info.ResolveLinkTarget(returnFinalTarget: true) ?? info; }
            catch (IOException) { return "a symbolic link that cannot be resolved"; }
            if (target is not FileInfo || !target.Exists) return "a symbolic link to something that is not a file";
        }
        long length = ((FileInfo)target).Length;
        if (length == 0) return "empty, or not a regular file (FIFO, device or socket); only regular .vpt files are served";
        if (length > MaxTaskFileBytes) return $"{length:N0} bytes, over the {MaxTaskFileBytes:N0}-byte task file limit";
        return null;
    }

    static string FirstLine(string message)
    {
        int cut = message.IndexOfAny(['\n', '\r']);
        return cut < 0 ? message : message[..cut];
    }

    /// <summary>Under the lock: a fresh engine holding every task that is an exact prefix (the rest are served per task).</summary>
    void RebuildEngine()
    {
        engine?.Dispose();
        engine = null;
        if (!MultiTaskEngine.Supports(backbone))
        {
            engineIndex = new Dictionary<string, int>();
            if (!engineRefusalLogged) Log?.Invoke($"{backbone.Model.Family} backbone: every task runs through its own model ({MultiTaskEngine.OnePassNeeds})");
            engineRefusalLogged = true;
            return;
        }
        var built = new MultiTaskEngine(backbone, engineDtype);
        var index = new Dictionary<string, int>();
        foreach (var (name, t) in tasks.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            try { PrefixRules.Check(MethodRegistry.FromJson(t.Artifact.Metadata.Method, t.Artifact.Metadata.MethodConfig.ToJsonString()), backbone.Config.Depth); }
            catch (ArgumentException) { continue; } // not an exact prefix: served through its own model
            try { index[name] = built.AddTask(t.Artifact, name); }
            catch (Exception e) { Log?.Invoke($"{name}: served through its own model ({FirstLine(e.Message)})"); } // one task never breaks the engine
        }
        engine = built;
        engineIndex = index;
    }

    bool engineRefusalLogged;

    bool ChangedSinceRejected(string name, FileInfo info) =>
        !rejectedStamp.TryGetValue(name, out var s) || s != (info.LastWriteTimeUtc, info.Length);

    public void Dispose()
    {
        lock (sync)
        {
            foreach (var t in tasks.Values) t.Model.Dispose();
            tasks = new();
            engine?.Dispose();
            engine = null;
        }
    }
}
