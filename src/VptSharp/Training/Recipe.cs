using TorchSharp.Modules;

namespace VptSharp.Training;

/// <summary>The three base configurations of the reference code (KMnP/vpt configs/base-*.yaml) that every method uses.</summary>
public enum RecipeFamily
{
    /// <summary>configs/base-finetune.yaml: AdamW, 5 warm-up epochs, batch 384. The reference's demo.ipynb runs Full,
    /// Partial-k, Bias and Adapter with it.</summary>
    Finetune,
    /// <summary>configs/base-linear.yaml: SGD, 10 warm-up epochs, batch 1024 (Linear, Mlp-k, Sidetune).</summary>
    Linear,
    /// <summary>configs/base-prompt.yaml: SGD, 10 warm-up epochs, batch 128 (VPT and its ablations).</summary>
    Prompt,
}

/// <summary>A method's optimizer, warm-up and batch size as the reference trains it.</summary>
public sealed record MethodRecipe(RecipeFamily Family, OptimizerKind Optimizer, int WarmupEpochs, int BatchSize)
{
    /// <summary>The reference's base-lr grid for this family (tune_vtab.py get_lrwd_range: "finetune" or "linear"/"prompt").</summary>
    public IReadOnlyList<double> LrGrid => Family == RecipeFamily.Finetune ? Recipe.FinetuneLrs : Recipe.SgdLrs;
}

/// <summary>
/// The reference recipe's rules, in one place so docs/fidelity.md can point at each: which base configuration a method
/// trains with, which parameters weight decay touches. (The FGVC resize rule lives with the images: Data.ImageTransform.) Every rule cites the reference file it
/// comes from.
/// </summary>
public static class Recipe
{
    /// <summary>tune_vtab.py get_lrwd_range, "finetune".</summary>
    public static readonly IReadOnlyList<double> FinetuneLrs = [0.001, 0.0001, 0.0005, 0.005];
    /// <summary>tune_vtab.py get_lrwd_range, "linear" and "prompt" (prompt lists the same ten values).</summary>
    public static readonly IReadOnlyList<double> SgdLrs = [50, 25, 10, 5, 2.5, 1, 0.5, 0.25, 0.1, 0.05];
    /// <summary>tune_vtab.py / tune_fgvc.py weight-decay grid.</summary>
    public static readonly IReadOnlyList<double> WeightDecays = [0.01, 0.001, 0.0001, 0.0];

    /// <summary>src/solver/optimizer.py: the reference's AdamW decays every non-bias parameter by this fixed value whenever
    /// the configured weight decay is positive (the grid's value is not used).</summary>
    public const double AdamWWeightDecay = 0.01;
    /// <summary>src/solver/optimizer.py: its AdamW (the Hugging Face one) uses eps 1e-6, not PyTorch's 1e-8.</summary>
    public const double AdamWEpsilon = 1e-6;

    public static MethodRecipe For(string method)
    {
        string m = method.ToLowerInvariant();
        if (m is "full" || m.StartsWith("partial") || m is "bias" or "adapter")
            return new MethodRecipe(RecipeFamily.Finetune, OptimizerKind.AdamW, 5, 384);
        if (m is "linear" or "sidetune" || m.StartsWith("mlp"))
            return new MethodRecipe(RecipeFamily.Linear, OptimizerKind.Sgd, 10, 1024);
        return new MethodRecipe(RecipeFamily.Prompt, OptimizerKind.Sgd, 10, 128);
    }

    /// <summary>
    /// Splits trainable parameters into (decayed, not decayed) as src/solver/optimizer.py does. SGD: every trainable
    /// tensor is decayed — prompts, biases, norm weights — except the head's bias ("last_layer.bias"). AdamW: tensors
    /// whose name contains "bias" are not decayed; everything else is (the reference's "LayerNorm.weight" exclusion
    /// never matches its ViT, whose norms are named attention_norm / ffn_norm / encoder_norm).
    /// </summary>
    public static (List<Parameter> Decay, List<Parameter> NoDecay) WeightDecayGroups(
        IReadOnlyList<(string Name, Parameter Param)> trainable, OptimizerKind optimizer)
    {
        bool NoDecay((string Name, Parameter Param) p) => optimizer == OptimizerKind.AdamW
            ? p.Name.Contains("bias", StringComparison.Ordinal)
            : p.Name == "head.bias";
        return (trainable.Where(p => !NoDecay(p)).Select(p => p.Param).ToList(),
                trainable.Where(NoDecay).Select(p => p.Param).ToList());
    }
}
