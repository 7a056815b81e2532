using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

/// <summary>
/// Bottleneck adapters (Pfeiffer et al. 2021 placement, as in the VPT paper's Adapter baseline): in every block the
/// MLP output passes through down-projection (d → d/r), GELU, up-projection (d/r → d) and is added to itself, before
/// the block's residual add. Initialisation: <see cref="AdapterInit"/>.
/// </summary>
public sealed record AdapterConfig : MethodConfig
{
    /// <summary>Reduction r (paper: 8, 64, 256).</summary>
    public int Reduction { get; init; } = 8;
    /// <summary>How the projections start; the reference's zero-both by default.</summary>
    public AdapterInit Init { get; init; } = AdapterInit.ZeroBoth;
    public override string Method => "adapter";
    public override string Label => $"adapter r={Reduction}";
    public override BackboneCapability Requires => BackboneCapability.MlpHook;
    protected override TuningMethod Create(Backbone backbone)
    {
        int narrowest = Enumerable.Range(0, backbone.Depth).Min(backbone.BlockWidth);
        if (Reduction < 1 || narrowest / Reduction < 1) throw new ArgumentException($"adapter reduction {Reduction} does not fit width {narrowest}");
        return new Adapter(this, backbone);
    }

    public static MethodRegistry.Entry Entry => new("adapter", "bottleneck adapter (d→d/r, GELU, d/r→d; the reference's zero-init of both, or the zero-up init) on every block's MLP output, added before the residual",
        "L·(2d²/r + d/r + d)  (+ head)", typeof(AdapterConfig), o => new AdapterConfig { Reduction = o.Reduction ?? 8, Init = o.AdapterInit ?? AdapterInit.ZeroBoth }, [SweepAxis.Reduction]);
}

/// <summary>Adapter initialisation.</summary>
public enum AdapterInit
{
    /// <summary>The reference's (src/models/vit_adapter/vit.py ADPT_Block): both projections' weights and biases zero.
    /// Then every gradient but the up-projection's bias is zero (GELU(0) = 0 feeds the up weight; the zero up weight
    /// blocks the down projection), so such an adapter can only learn a constant per-block offset.</summary>
    ZeroBoth,
    /// <summary>Ours: down-projection at PyTorch's default init, up-projection zero — training still starts from the frozen
    /// model, and every adapter tensor gets gradients.</summary>
    ZeroUp,
}

public sealed class Adapter : TuningMethod
{
    readonly AdapterConfig config;
    public readonly ModuleList<Linear> down, up;

    public Adapter(AdapterConfig config, Backbone backbone) : base("Adapter")
    {
        this.config = config;
        // Each block's adapter at that block's width (a Swin widens stage by stage).
        int[] widths = Enumerable.Range(0, backbone.Depth).Select(backbone.BlockWidth).ToArray();
        down = new ModuleList<Linear>(widths.Select(w => Linear(w, w / config.Reduction)).ToArray());
        up = new ModuleList<Linear>(widths.Select(w => Linear(w / config.Reduction, w)).ToArray());
        using (no_grad())
        {
            foreach (var u in up) { u.weight!.zero_(); u.bias!.zero_(); }
            if (config.Init == AdapterInit.ZeroBoth)
                foreach (var d in down) { d.weight!.zero_(); d.bias!.zero_(); }
        }
        RegisterComponents();
    }

    public override MethodConfig Config => config;

    public override Tensor AfterMlp(int block, Tensor mlpOutput)
    {
        using var scope = NewDisposeScope();
        // The adapter keeps its own (float32) dtype whatever the frozen backbone runs in.
        var a = up[block].forward(functional.gelu(down[block].forward(mlpOutput.to(down[block].weight!.dtype))));
        return mlpOutput.add(a.to(mlpOutput.dtype), Scalars.One).MoveToOuterDisposeScope(); // a held Scalar: see Scalars
    }
}
