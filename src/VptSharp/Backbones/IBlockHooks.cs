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
}

/// <summary>Hooks that change nothing: the plain backbone.</summary>
public sealed class NoHooks : IBlockHooks
{
    public static readonly NoHooks Instance = new();
    public Tensor BeforeBlock(int block, Tensor tokens) => tokens;
}
