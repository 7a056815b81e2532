using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Inference;

/// <summary>
/// VPT-prefix (paper appendix, Fig. 19). In VPT-deep the prompt outputs of block i are dropped before block i+1, so at
/// inference block i's prompts P_i only ever serve as keys and values: K_i = LN1_i(P_i)·W_k + b_k, V_i likewise, can be
/// computed once per task and the backbone then runs on CLS + patch tokens alone (no prompt queries, no prompt MLP).
/// </summary>
public static class PrefixRules
{
    /// <summary>
    /// Throws <see cref="ArgumentException"/> unless the method's forward equals the frozen backbone with a per-block
    /// key/value prefix and a CLS or image-pool head — each method says whether it is (<see cref="MethodConfig.PrefixInexactReason"/>).
    /// </summary>
    public static void Check(MethodConfig config, int depth)
    {
        if (config.PrefixInexactReason(depth) is string why) throw new ArgumentException(why);
    }
}
