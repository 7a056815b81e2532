using TorchSharp;
using static TorchSharp.torch;

namespace VptSharp.Backbones;

/// <summary>
/// The one seam between a backbone and a tuning method. The backbone calls <see cref="BeforeBlock"/> with the
/// token sequence entering each block (index 0 = first block) and continues with what it returns. It knows
/// nothing of prompts: a method that inserts, replaces or adds tokens does it here.
/// </summary>
public interface IBlockHooks
{
    Tensor BeforeBlock(int block, Tensor tokens);
}

/// <summary>Hooks that change nothing: the plain backbone.</summary>
public sealed class NoHooks : IBlockHooks
{
    public static readonly NoHooks Instance = new();
    public Tensor BeforeBlock(int block, Tensor tokens) => tokens;
}
