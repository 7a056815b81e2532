using TorchSharp;
using VptSharp.Data;
using VptSharp.Hardware;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Inference;

/// <summary>
/// A classifier loaded from a file, as `vpt eval` / `vpt predict` use it: a task file's model, or an ensemble file's
/// members on the multi-task engine, in the precision --precision resolves to.
/// </summary>
public sealed class LoadedClassifier : IDisposable
{
    readonly PromptedModel? model;
    readonly EnsemblePredictor? ensemble;
    public string[] Classes { get; }
    public Preprocessing Preprocessing { get; }
    /// <summary>The method, or "ensemble of k: m1, m2, …".</summary>
    public string Method { get; }
    public string BackboneSha256 { get; }

    /// <summary>The backbone precision this classifier runs in, and why.</summary>
    public PrecisionChoice Precision { get; }

    LoadedClassifier(PromptedModel? model, EnsemblePredictor? ensemble, string[] classes, Preprocessing pre, string method, string sha256,
        PrecisionChoice precision) =>
        (this.model, this.ensemble, Classes, Preprocessing, Method, BackboneSha256, Precision) = (model, ensemble, classes, pre, method, sha256, precision);

    /// <param name="precision">Backbone precision; auto = bf16 where the hardware has fast bf16 and the task's method keeps
    /// the backbone frozen (<see cref="PrecisionPolicy"/>).</param>
    public static LoadedClassifier Load(string path, string? backboneOverride, string device, Precision precision = Hardware.Precision.Fp32)
    {
        var dev = Devices.Parse(device);
        if (EnsembleArtifact.IsEnsembleFile(path))
        {
            if (dev.type != DeviceType.CPU)
                throw new InvalidSettingException("device", device, "ensemble files run on the CPU multi-task engine only");
            // Every member is a prefix on the shared, frozen backbone.
            var choice = PrecisionPolicy.Resolve(precision, backboneFrozen: true, DeviceType.CPU, CpuFeatures.Current);
            var art = EnsembleArtifact.Load(path);
            var predictor = art.LoadPredictor(backboneOverride, choice.Dtype);
            string members = $"ensemble of {art.Members.Count}: {string.Join(", ", art.Members.Select(m => m.Metadata.Method))}";
            return new LoadedClassifier(null, predictor, art.Classes, art.Preprocessing, members + Suffix(choice), art.Backbone.Sha256, choice);
        }
        var task = TaskArtifact.Load(path);
        var m = task.LoadModel(backboneOverride, path);
        if (precision == Hardware.Precision.Bf16 && !m.KeepsBackboneFrozen())
            throw new InvalidSettingException("precision", "bf16", $"{path} is a {task.Metadata.Method} task, whose backbone weights were trained in float32; use fp32 or auto");
        m.MoveTo(dev);
        var chosen = m.ApplyPrecision(precision, dev.type);
        m.backbone.FoldNormsForInference(); // this backbone only predicts from here on
        return new LoadedClassifier(m, null, task.Metadata.Classes, task.Metadata.Preprocessing, task.Metadata.Method + Suffix(chosen), task.Metadata.Backbone.Sha256, chosen);
    }

    static string Suffix(PrecisionChoice c) => c.Precision == Hardware.Precision.Bf16 ? " (bf16 backbone)" : "";

    public EvalResult Evaluate(ImageDataset data, int batchSize, string device) =>
        ensemble?.Evaluate(data, batchSize) ?? Evaluation.Evaluate(model!, data, Preprocessing, batchSize, device);

    public List<ClassScore[]> TopK(Tensor images, int k) =>
        ensemble?.TopK(images, k) ?? Predictor.TopK(model!, images, Classes, k);

    public void Dispose()
    {
        ensemble?.Dispose(); // disposes the backbone it loaded
        model?.Dispose();    // a task model does not own its backbone; the process ends right after
    }
}
