using TorchSharp;
using VptSharp.Data;
using static TorchSharp.torch;

namespace VptSharp.Tuning;

public sealed record EvalResult(double Top1, int Count, int Correct, int[] Predictions, double Loss);

/// <summary>
/// A model over a whole dataset, batched, under no_grad in eval mode, without augmentation: top-1 and loss, or the pooled
/// features. Training (validation, cached features, prototypes) and inference (`vpt eval`, ensembles) both use it.
/// </summary>
public static class Evaluation
{
    /// <summary>
    /// The batch a frozen forward pass uses: at most 16 images from 128 px up. Results do not depend on it (eval mode, no
    /// gradients); speed does. ResNet-18 at 224 px in bf16 (2 threads, avx512_bf16 EPYC, with <see cref="Hardware.NativeHeap"/>):
    /// 81 images/s at 16 and 8, 37 at 64, whose 100 MB activations are fresh pages on every pass.
    /// </summary>
    public static int ForwardBatch(int batchSize, int imageSize) => imageSize >= 128 ? Math.Min(batchSize, 16) : batchSize;

    /// <summary>A loader batch as an image tensor [B, 3, size, size] on a device.</summary>
    public static Tensor ToTensor(Batch b, int imageSize, Device device) =>
        tensor(b.Images, [b.Count, 3, imageSize, imageSize], device: device);

    public static EvalResult Evaluate(PromptedModel model, ImageDataset data, Preprocessing pre, int batchSize = 64, string device = "cpu", int workers = 2)
    {
        model.eval();
        return Evaluate(x => nn.functional.log_softmax(model.forward(x), 1), data, pre, batchSize, device, workers);
    }

    /// <summary>Evaluation of any classifier given as images → log-probabilities [B, classes] (a model, an ensemble).</summary>
    public static EvalResult Evaluate(Func<Tensor, Tensor> logProbabilities, ImageDataset data, Preprocessing pre, int batchSize = 64, string device = "cpu", int workers = 2)
    {
        var dev = Devices.Parse(device);
        var loader = new BatchLoader(data, new ImageTransform(pre, train: false), ForwardBatch(batchSize, pre.ImageSize), shuffle: false, seed: 0, workers);
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

    /// <summary>The model's head on precomputed features [N, d] against their labels, in eval mode.</summary>
    public static EvalResult EvaluateHead(PromptedModel model, Tensor features, Tensor labels)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        model.eval();
        var logits = model.ForwardHead(features);
        var pred = logits.argmax(1);
        int n = (int)features.shape[0], correct = (int)pred.eq(labels).sum().item<long>();
        double loss = n == 0 ? 0 : nn.functional.cross_entropy(logits, labels).item<float>();
        return new EvalResult(n == 0 ? 0 : (double)correct / n, n, correct, pred.cpu().data<long>().Select(p => (int)p).ToArray(), loss);
    }

    /// <summary>Pooled features ([N, d], CPU float32) of a dataset, without augmentation.</summary>
    public static Tensor Features(PromptedModel model, ImageDataset data, Preprocessing pre, int batchSize = 64, string device = "cpu", int workers = 2)
    {
        var dev = Devices.Parse(device);
        var loader = new BatchLoader(data, new ImageTransform(pre, train: false), ForwardBatch(batchSize, pre.ImageSize), shuffle: false, seed: 0, workers);
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
}
