using System.Security.Cryptography;
using System.Text;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Training;

/// <summary>
/// Frozen-backbone features of a dataset, computed once and handed to every run that trains only a head on them: a
/// sweep's lr × weight-decay × seed grid of linear and mlp-k runs on one task featurizes each split once instead of
/// once per run. Features depend on the backbone, the dataset and the preprocessing only (<see cref="TuningMethod.FeaturesAreFrozen"/>
/// methods pool the backbone alike), so the memo is keyed by those. The owner keeps the backbone's weights fixed while
/// the memo lives (a sweep restores them after every run that trains them) and disposes it.
/// With a directory, features are also kept on disk (safetensors, written atomically) under a name derived from the
/// backbone's sha256 and architecture, the dataset's item names and labels, the preprocessing and the dtype: a sweep's child processes,
/// the array jobs of a cluster sweep on a shared folder and a resumed sweep then all featurize a split once. A file
/// that does not read back as finite features of the split's shape (or is larger than those) is computed again and
/// replaced.
/// </summary>
public sealed class FeatureMemo(string? directory = null, string? backboneSha256 = null) : IDisposable
{
    readonly Dictionary<(Backbone, ImageDataset, Preprocessing, ScalarType), Tensor> store = new();

    /// <summary>How many times features were computed (not served from memory or disk).</summary>
    public int Computed { get; private set; }

    /// <summary>The features [N, d] (CPU float32) of <paramref name="data"/> under <paramref name="model"/>'s backbone, as a
    /// new handle the caller owns and may dispose; the memo keeps its own.</summary>
    public Tensor Get(PromptedModel model, ImageDataset data, Preprocessing pre, int batchSize, string device, int workers)
    {
        if (!model.method.FeaturesAreFrozen)
            throw new InvalidOperationException($"method {model.method.Config.Method} changes the backbone's features; they cannot be memoised");
        var key = (model.backbone, data, pre, model.BackboneDtype);
        if (!store.TryGetValue(key, out var features))
        {
            string? file = directory is null || backboneSha256 is null ? null : Path.Combine(directory, FileName(model.backbone, data, pre, model.BackboneDtype));
            var onDisk = file is null ? null : TryRead(file, data.Count, model.backbone.NumFeatures);
            if (onDisk is null)
            {
                onDisk = Evaluation.Features(model, data, pre, batchSize, device, workers);
                Computed++;
                if (file is not null) SafetensorsFile.Save(file, new Dictionary<string, Tensor> { ["features"] = onDisk });
            }
            store[key] = features = onDisk;
        }
        return features.alias();
    }

    static Tensor? TryRead(string file, int count, int width)
    {
        // Only a file the size of [count, width] float32 and a small header is read, and only finite values are used.
        var info = new FileInfo(file);
        if (!info.Exists || info.Length > 4L * count * width + (1 << 16)) return null;
        try
        {
            var tensors = SafetensorsFile.Load(file);
            var t = tensors.GetValueOrDefault("features");
            foreach (var other in tensors.Where(kv => kv.Key != "features")) other.Value.Dispose();
            if (t is not null && t.dtype == ScalarType.Float32 && t.shape.SequenceEqual(new long[] { count, width }))
            {
                using var finite = t.isfinite().all();
                if (finite.item<bool>()) return t;
            }
            t?.Dispose();
        }
        catch (Exception e) when (e is not OutOfMemoryException) { } // unreadable (truncated, foreign): computed again
        return null;
    }

    string FileName(Backbone backbone, ImageDataset data, Preprocessing pre, ScalarType dtype)
    {
        var text = new StringBuilder($"{backboneSha256}|{backbone.Architecture}|{dtype}|{pre.ImageSize}|{pre.Resize}|{string.Join(",", pre.Mean)}|{string.Join(",", pre.Std)}|{data.Count}");
        for (int i = 0; i < data.Count; i++) text.Append('\n').Append(data.NameOf(i)).Append('\t').Append(data.LabelOf(i));
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..24] + ".safetensors";
    }

    public void Dispose()
    {
        foreach (var t in store.Values) t.Dispose();
        store.Clear();
    }
}
