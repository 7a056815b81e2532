using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Backbones;

/// <summary>
/// What a backbone family lets a tuning method do besides the hooks every family has (the input-embedding step,
/// <see cref="IBlockHooks.BeforeBlock"/> on each block's input, pooling, named parameter groups). A method names the
/// capabilities it needs (<c>MethodConfig.Requires</c>) and is refused, before anything is built, on a family that
/// lacks one. The data and operations behind a capability live on the interface named with it.
/// </summary>
[Flags]
public enum BackboneCapability
{
    None = 0,
    /// <summary>Blocks see a token sequence [B, 1 + N, d] with a class token first; a hook may insert tokens after it
    /// and the blocks carry them (<see cref="ITokenSequenceBackbone"/>). ViT: yes. ConvNets: no.</summary>
    TokenSequence = 1,
    /// <summary>Each block calls <see cref="IBlockHooks.AfterMlp"/> on its MLP output before the residual add (adapters).</summary>
    MlpHook = 2,
    /// <summary>Each block's attention takes extra keys/values (<see cref="IBlockHooks.PrefixKeyValues"/>,
    /// <see cref="IBlockHooks.KeyValueTokens"/>) and can project tokens to them (<see cref="IAttentionPrefixBackbone"/>):
    /// VPT-prefix, many tasks per pass.</summary>
    AttentionPrefix = 4,
    /// <summary>A linear patch projection pixel-space prompts can pass through (<see cref="IPatchProjectionBackbone"/>).</summary>
    PatchProjection = 8,
    /// <summary>A learnable class token that can be trained on its own (<see cref="ITokenSequenceBackbone.ClassToken"/>).</summary>
    ClassToken = 16,
    /// <summary>The blocks take images of any size (convolutions and global pooling, no position embeddings), so a
    /// method may enlarge the input: VPT's pad prompts for ConvNets. ConvNets: yes. ViT: no.</summary>
    AnyImageSize = 32,
    /// <summary>Local-window attention that takes prompt tokens into every window of a block and carries their outputs
    /// to the next block of the same stage, never through patch merging (<see cref="IWindowPromptBackbone"/>,
    /// <see cref="IBlockHooks.WindowPrompts"/>): VPT on hierarchical Transformers (paper §4.2). Swin: yes.</summary>
    WindowPrompts = 64,
}

public static class BackboneCapabilities
{
    /// <summary>What each capability in <paramref name="capabilities"/> is, in words (for refusals).</summary>
    public static IReadOnlyList<string> Describe(BackboneCapability capabilities) => Enum.GetValues<BackboneCapability>()
        .Where(c => c != BackboneCapability.None && capabilities.HasFlag(c)).Select(c => c switch
        {
            BackboneCapability.TokenSequence => "a token sequence to insert prompt tokens into",
            BackboneCapability.MlpHook => "a hook on each block's MLP output",
            BackboneCapability.AttentionPrefix => "per-block attention keys/values",
            BackboneCapability.PatchProjection => "a linear patch projection",
            BackboneCapability.ClassToken => "a learnable class token",
            BackboneCapability.AnyImageSize => "to take images larger than it was built for",
            BackboneCapability.WindowPrompts => "windowed attention that takes prompt tokens",
            _ => c.ToString(),
        }).ToList();
}

/// <summary>Named groups of backbone parameters that methods train, so no method selects parameters by name.</summary>
public enum ParameterGroup
{
    /// <summary>Every backbone parameter (the classifier excluded).</summary>
    All,
    /// <summary>Every bias term, normalisation biases included (BitFit).</summary>
    Biases,
    /// <summary>The weights and biases of every normalisation layer.</summary>
    Norms,
    /// <summary>The last k blocks (in stage order) and the final norm: partial-k.</summary>
    LastBlocks,
    /// <summary>The patch projection's weight and bias (the concat-channel prompt trains it, as the reference).</summary>
    PatchProjection,
}

/// <summary>
/// A pretrained vision backbone as tuning methods see it (timm's shape): <see cref="Embed"/> (images → what block 1
/// takes), <see cref="ForwardBlocks"/> (blocks with one <see cref="IBlockHooks"/> call each, then the final norm),
/// <see cref="ForwardFeatures"/>, <see cref="ForwardHead"/> (pool + optional classifier), <see cref="ResetClassifier"/>,
/// and <see cref="Parameters(ParameterGroup, int)"/>. A family implements this plus the interfaces of the capabilities
/// it offers; it knows nothing of prompts or adapters.
/// </summary>
public abstract class Backbone(string name) : Module<Tensor, Tensor>(name)
{
    /// <summary>Family name ("vit"), as methods' refusals name it.</summary>
    public abstract string Family { get; }
    /// <summary>The family and its whole configuration ("vit {…json…}"): with the weights' sha256 it names the function a
    /// backbone computes. The same weights under another architecture (e.g. --heads) compute other features, so keys of
    /// cached features (<c>FeatureMemo</c>) carry both.</summary>
    public abstract string Architecture { get; }
    public abstract BackboneCapability Capabilities { get; }
    /// <summary>Width of the pooled feature the head sees.</summary>
    public abstract int NumFeatures { get; }
    /// <summary>Number of hooked blocks (hook indices 0 … Depth − 1).</summary>
    public abstract int Depth { get; }
    /// <summary>Channel width of block <paramref name="block"/>'s tokens (and of its MLP output): <see cref="NumFeatures"/>
    /// unless the family widens stage by stage (Swin).</summary>
    public virtual int BlockWidth(int block) => NumFeatures;
    /// <summary>Input resolution the weights (position embeddings) were built for.</summary>
    public abstract int ImageSize { get; }
    public abstract int InChannels { get; }
    /// <summary>The per-channel mean and std that take [0, 1] RGB pixels to this backbone's input: ImageNet's unless the
    /// weights' source sets others (resnet18-imagenet's folded mean image). Images are normalised by them
    /// (<c>LoadedBackbone.Preprocessing</c>), and so are pixel-space prompts (VPT-pad, as the reference's prompt_norm).</summary>
    public float[] PixelMean { get; set; } = [0.485f, 0.456f, 0.406f];
    public float[] PixelStd { get; set; } = [0.229f, 0.224f, 0.225f];
    /// <summary>The classifier, when the backbone has one (null for a feature extractor).</summary>
    public abstract Linear? Classifier { get; }

    /// <summary>The dtype the backbone computes in (float32 unless converted).</summary>
    public ScalarType Dtype => parameters().First().dtype;
    public Device Device => parameters().First().device;

    public bool Has(BackboneCapability capability) => (Capabilities & capability) == capability;

    /// <summary>The input-embedding step: images [B, C, H, W] → what the first block takes.</summary>
    public abstract Tensor Embed(Tensor images);

    /// <summary>Runs every block (calling <paramref name="hooks"/> before each) and the final norm.</summary>
    public abstract Tensor ForwardBlocks(Tensor embedded, IBlockHooks hooks);

    /// <summary>The default pooled feature [B, NumFeatures] of <see cref="ForwardFeatures"/>' output (ViT: the class token).</summary>
    public abstract Tensor Pool(Tensor features);

    /// <summary>Replaces the classifier (0 classes removes it), timm's reset_classifier.</summary>
    public abstract void ResetClassifier(int numClasses);

    /// <summary>
    /// For a backbone that serves inference only from now on (its weights, precision and device fixed): folds each
    /// normalisation that follows a convolution into it where the family has such pairs (ResNet's BatchNorms), so a
    /// forward pass makes fewer passes over memory; the outputs stay those of the unfolded network up to rounding.
    /// <paramref name="fold"/> false undoes it. Families without foldable norms (LayerNorm) do nothing.
    /// </summary>
    public virtual void FoldNormsForInference(bool fold = true) { }

    /// <summary>A named parameter group; <paramref name="count"/> is k for <see cref="ParameterGroup.LastBlocks"/>.</summary>
    public abstract IEnumerable<(string Name, Parameter Param)> Parameters(ParameterGroup group, int count = 1);

    public Tensor ForwardFeatures(Tensor images, IBlockHooks? hooks = null)
    {
        using var emb = Embed(images);
        return ForwardBlocks(emb, hooks ?? NoHooks.Instance);
    }

    /// <summary>Pool + classifier (the pooled feature itself with <paramref name="preLogits"/> or no classifier).</summary>
    public Tensor ForwardHead(Tensor features, bool preLogits = false)
    {
        var pooled = Pool(features);
        if (preLogits || Classifier is null) return pooled;
        using (pooled) return Classifier.forward(pooled);
    }

    public override Tensor forward(Tensor images)
    {
        using var f = ForwardFeatures(images);
        return ForwardHead(f);
    }

    /// <summary>Backbone parameters without the classifier: what a frozen backbone is made of.</summary>
    public IEnumerable<(string Name, Parameter Param)> BackboneParameters() => Parameters(ParameterGroup.All);

    public long BackboneParameterCount => BackboneParameters().Sum(p => p.Param.numel());

    /// <summary>Frozen: no gradients, eval mode (no dropout), as in the reference recipe.</summary>
    public void Freeze()
    {
        foreach (var p in parameters()) p.requires_grad = false;
        eval();
    }
}

/// <summary><see cref="BackboneCapability.TokenSequence"/> (+ <see cref="BackboneCapability.ClassToken"/>): a plain token
/// sequence of width <see cref="Width"/> with one class token before <see cref="NumPatches"/> patch tokens.</summary>
public interface ITokenSequenceBackbone
{
    int Width { get; }
    int PatchSize { get; }
    int NumPatches { get; }
    Parameter ClassToken { get; }
    /// <summary>True when the head input is a global average (MAE): <see cref="PoolTokens"/>, not the class token; the
    /// blocks' output is then not normed.</summary>
    bool GlobalPool { get; }
    /// <summary>The global-pooling head input over tokens first … first + count − 1 (mean, then the post-pool norm).</summary>
    Tensor PoolTokens(Tensor features, long first, long count);
}

/// <summary><see cref="BackboneCapability.AttentionPrefix"/>: per-block attention geometry and the frozen projection of
/// tokens to that block's keys/values.</summary>
public interface IAttentionPrefixBackbone
{
    int Heads { get; }
    int HeadDim { get; }
    /// <summary>Keys/values [b, heads, p, head_dim] of tokens [b, p, d] as block <paramref name="block"/> sees them
    /// (through its own pre-attention norm and key/value projections).</summary>
    KeyValuePrefix KeyValuesOf(int block, Tensor tokens);
}

/// <summary><see cref="BackboneCapability.PatchProjection"/>: the frozen linear patch projection.</summary>
public interface IPatchProjectionBackbone
{
    int PatchSize { get; }
    /// <summary>Pixel patches [p, C, P, P] → tokens [p, d] through the patch projection (its bias included).</summary>
    Tensor ProjectPatches(Tensor pixelPatches);
}

/// <summary><see cref="BackboneCapability.WindowPrompts"/>: a hierarchy of stages (blocks and width per stage) whose blocks
/// attend within local windows; prompts given to a block by <see cref="IBlockHooks.WindowPrompts"/> join each of its windows.</summary>
public interface IWindowPromptBackbone
{
    int PatchSize { get; }
    IReadOnlyList<int> StageDepths { get; }
    IReadOnlyList<int> StageWidths { get; }
    /// <summary>The 0-based stage of hooked block <paramref name="block"/>.</summary>
    int StageOf(int block);
}
