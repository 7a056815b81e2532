using VptSharp.Backbones;
using VptSharp.Data;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Training;

/// <summary>
/// The "cls-prototype" prompt initialisation (paper appendix B): prompt k starts as the mean final CLS embedding of the
/// frozen backbone (no prompts) over the train-split images of class k.
/// </summary>
public static class ClsPrototypes
{
    /// <summary>Per-class mean of the frozen backbone's final-norm CLS output: [classes, d].</summary>
    public static Tensor Compute(Backbone backbone, ImageDataset train, Preprocessing pre, TrainOptions options)
    {
        int classes = train.Classes.Count;
        using var probe = PromptedModel.Create(backbone, new LinearProbeConfig(), classes);
        using var feats = Evaluation.Features(probe, train, pre, options.BatchSize, options.Device, options.Workers);
        using var labels = tensor(train.Labels().Select(l => (long)l).ToArray(), device: feats.device);
        using var sums = zeros(classes, feats.shape[1], device: feats.device).index_add_(0, labels, feats, 1);
        using var counts = bincount(labels, minlength: classes).to(feats.dtype);
        var empty = Enumerable.Range(0, classes).Where(c => counts[c].item<float>() == 0).Select(c => train.Classes[c]).ToList();
        if (empty.Count > 0)
            throw new InvalidSettingException("prompt-init", "cls-prototype", $"class(es) {string.Join(", ", empty)} have no training image to average (add images or use random init)");
        return sums / counts.unsqueeze(1);
    }

    /// <summary>Initialises the model's prompts from prototypes when its config asks for it; returns whether it did.</summary>
    public static bool InitializeIfRequested(PromptedModel model, ImageDataset train, Preprocessing pre, TrainOptions options)
    {
        if (model.method is not VisualPrompts vp || model.method.Config is not PromptConfig { Init: PromptInit.ClsPrototype }) return false;
        using var protos = Compute(model.backbone, train, pre, options);
        vp.InitializeFromPrototypes(protos);
        return true;
    }
}
