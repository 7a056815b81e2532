using TorchSharp;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Inference;

public sealed record ClassScore(string Label, int Index, double Probability);

/// <summary>Top-k predictions under no_grad with the model in eval mode. (Whole-dataset evaluation and features: <see cref="Evaluation"/>.)</summary>
public static class Predictor
{
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

    /// <summary>Top-k classes of one probability vector, most probable first; equal probabilities go to the lower class index.</summary>
    public static ClassScore[] TopKOf(IReadOnlyList<float> probabilities, IReadOnlyList<string> classes, int k) =>
        probabilities.Select((v, i) => new ClassScore(classes[i], i, v)).OrderByDescending(s => s.Probability).ThenBy(s => s.Index).Take(k).ToArray();
}
