using TorchSharp;
using VptSharp.Data;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Inference;

public sealed record EvalResult(double Top1, int Count, int Correct, int[] Predictions, double Loss);

public sealed record ClassScore(string Label, int Index, double Probability);

/// <summary>Batched evaluation, prediction and feature extraction under no_grad with the model in eval mode.</summary>
public static class Predictor
{
    public static Tensor ToTensor(Batch b, int imageSize, Device device) =>
        tensor(b.Images, [b.Count, 3, imageSize, imageSize], device: device);

    public static Device ParseDevice(string name)
    {
        var d = new Device(name);
        if (d.type == DeviceType.CUDA && !cuda.is_available())
            throw new ArgumentException($"--device {name}: CUDA is not available in this build; reference a libtorch-cuda runtime package instead of libtorch-cpu");
        return d;
    }

    public static EvalResult Evaluate(PromptedModel model, ImageDataset data, Preprocessing pre, int batchSize = 64, string device = "cpu", int workers = 2)
    {
        model.eval();
        return Evaluate(x => nn.functional.log_softmax(model.forward(x), 1), data, pre, batchSize, device, workers);
    }

    /// <summary>Evaluation of any classifier given as images → log-probabilities [B, classes] (a model, an ensemble).</summary>
    public static EvalResult Evaluate(Func<Tensor, Tensor> logProbabilities, ImageDataset data, Preprocessing pre, int batchSize = 64, string device = "cpu", int workers = 2)
    {
        var dev = ParseDevice(device);
        var loader = new BatchLoader(data, new ImageTransform(pre, train: false), batchSize, shuffle: false, seed: 0, workers);
        var preds = new int[data.Count];
        int correct = 0, seen = 0;
        double lossSum = 0;
        using var _ = no_grad();
        foreach (var b in loader.Epoch(0))
        {
            using var scope = NewDisposeScope();
            var x = ToTensor(b, pre.ImageSize, dev);
            var y = tensor(b.Labels, device: dev);
            var logp = logProbabilities(x);
            lossSum += nn.functional.nll_loss(logp, y, reduction: nn.Reduction.Sum).item<float>();
            var p = logp.argmax(1).cpu().data<long>().ToArray();
            for (int i = 0; i < b.Count; i++)
            {
                preds[seen + i] = (int)p[i];
                if (p[i] == b.Labels[i]) correct++;
            }
            seen += b.Count;
        }
        return new EvalResult(data.Count == 0 ? 0 : (double)correct / data.Count, data.Count, correct, preds, data.Count == 0 ? 0 : lossSum / data.Count);
    }

    /// <summary>Pooled features ([N, d], CPU float32) of a dataset, without augmentation.</summary>
    public static Tensor Features(PromptedModel model, ImageDataset data, Preprocessing pre, int batchSize = 64, string device = "cpu", int workers = 2)
    {
        var dev = ParseDevice(device);
        var loader = new BatchLoader(data, new ImageTransform(pre, train: false), batchSize, shuffle: false, seed: 0, workers);
        model.eval();
        var parts = new List<Tensor>();
        using var _ = no_grad();
        foreach (var b in loader.Epoch(0))
        {
            using var scope = NewDisposeScope();
            parts.Add(model.Features(ToTensor(b, pre.ImageSize, dev)).cpu().MoveToOuterDisposeScope());
        }
        var all = parts.Count == 0 ? zeros(0, model.backbone.NumFeatures) : cat(parts, 0);
        foreach (var p in parts) p.Dispose();
        return all;
    }

    /// <summary>Top-k classes with softmax probabilities for each image of a preprocessed batch.</summary>
    public static List<ClassScore[]> TopK(PromptedModel model, Tensor images, IReadOnlyList<string> classes, int k)
    {
        model.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        return TopK(nn.functional.softmax(model.forward(images), 1), classes, k);
    }

    /// <summary>Top-k classes of each row of a probability matrix [B, classes].</summary>
    public static List<ClassScore[]> TopK(Tensor probabilities, IReadOnlyList<string> classes, int k)
    {
        using var scope = NewDisposeScope();
        var probs = probabilities.cpu();
        var (vals, idx) = probs.topk(Math.Min(k, classes.Count), 1);
        var o = new List<ClassScore[]>();
        for (int i = 0; i < probs.shape[0]; i++)
            o.Add(Enumerable.Range(0, (int)vals.shape[1])
                .Select(j => new ClassScore(classes[(int)idx[i, j].item<long>()], (int)idx[i, j].item<long>(), vals[i, j].item<float>())).ToArray());
        return o;
    }
}
