using VptSharp.Backbones;
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
/// </summary>
public sealed class FeatureMemo : IDisposable
{
    readonly Dictionary<(Backbone, ImageDataset, Preprocessing, ScalarType), Tensor> store = new();

    /// <summary>How many times features were computed (not served from the memo).</summary>
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
            features = Evaluation.Features(model, data, pre, batchSize, device, workers);
            store[key] = features;
            Computed++;
        }
        return features.alias();
    }

    public void Dispose()
    {
        foreach (var t in store.Values) t.Dispose();
        store.Clear();
    }
}
