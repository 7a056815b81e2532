using TorchSharp;
using static TorchSharp.torch;

namespace VptSharp.Backbones;

/// <summary>
/// The seam between a backbone and a tuning method, called once per block. The backbone calls
/// <see cref="BeforeBlock"/> with the token sequence entering each block (index 0 = first block) and continues with
/// what it returns, and <see cref="AfterMlp"/> with the block's MLP output before the residual add. It knows
/// nothing of prompts or adapters: a method that inserts tokens or adds a bottleneck does it here.
/// </summary>
public interface IBlockHooks
{
    Tensor BeforeBlock(int block, Tensor tokens);

    /// <summary>The MLP (FFN) output of a block, before it is added to the residual stream.</summary>
    Tensor AfterMlp(int block, Tensor mlpOutput) => mlpOutput;

    /// <summary>
    /// Extra keys/values that block <paramref name="block"/>'s attention attends to besides the sequence's own tokens
    /// (null = none, the default). They are not tokens: no query, no residual, no MLP. The hook owns the tensors.
    /// </summary>
    KeyValuePrefix? PrefixKeyValues(int block) => null;

    /// <summary>
    /// Tokens [1 or <paramref name="batch"/>, p, d] that block <paramref name="block"/> attends to as keys/values only, projected
    /// by the block's own norm1 and qkv (so gradients reach them): a trainable prefix. Used when
    /// <see cref="PrefixKeyValues"/> gives none; null = none (the default).
    /// </summary>
    Tensor? KeyValueTokens(int block, long batch) => null;

    /// <summary>
    /// Window-attention backbones (<see cref="BackboneCapability.WindowPrompts"/>): the prompt tokens [1 or
    /// <paramref name="batch"/>, p, width of the block] that join every window of block <paramref name="block"/>, given
    /// <paramref name="carried"/> — the prompt outputs of the previous block of the same stage (null at a stage's first
    /// block: patch merging drops prompts). Null = none. The default carries on what it is given.
    /// </summary>
    Tensor? WindowPrompts(int block, Tensor? carried, long batch) => carried;
}

/// <summary>
/// Per-block attention prefix: <paramref name="Keys"/> and <paramref name="Values"/> are [B or 1, heads, p, head_dim] in
/// the attention's dtype; <paramref name="Mask"/> (optional) is an additive mask over the p prefix positions,
/// broadcastable to [B, 1, 1, p] (0 = attend, −inf = padding), for batches whose samples have prefixes of different length.
/// </summary>
public readonly record struct KeyValuePrefix(Tensor Keys, Tensor Values, Tensor? Mask = null)
{
    public long Length => Keys.shape[2];
}

/// <summary>Hooks that change nothing: the plain backbone.</summary>
public sealed class NoHooks : IBlockHooks
{
    public static readonly NoHooks Instance = new();
    public Tensor BeforeBlock(int block, Tensor tokens) => tokens;
}
