using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

/// <summary>
/// Bottleneck adapters (Pfeiffer et al. 2021 placement, as in the VPT paper's Adapter baseline): in every block the
/// MLP output passes through down-projection (d → d/r), GELU, up-projection (d/r → d, zero-initialised so training
/// starts from the frozen model) and is added to itself, before the block's residual add.
/// </summary>
public sealed record AdapterConfig : MethodConfig
{
    /// <summary>Reduction r (paper: 8, 64, 256).</summary>
    public int Reduction { get; init; } = 8;
    public override string Method => "adapter";
    public override TuningMethod Create(VitConfig vit)
    {
        if (Reduction < 1 || vit.Width / Reduction < 1) throw new ArgumentException($"adapter reduction {Reduction} does not fit width {vit.Width}");
        return new Adapter(this, vit);
    }
}

public sealed class Adapter : TuningMethod
{
    readonly AdapterConfig config;
    public readonly ModuleList<Linear> down, up;

    public Adapter(AdapterConfig config, VitConfig vit) : base("Adapter")
    {
        this.config = config;
        int bottleneck = vit.Width / config.Reduction;
        down = new ModuleList<Linear>(Enumerable.Range(0, vit.Depth).Select(_ => Linear(vit.Width, bottleneck)).ToArray());
        up = new ModuleList<Linear>(Enumerable.Range(0, vit.Depth).Select(_ => Linear(bottleneck, vit.Width)).ToArray());
        using (no_grad())
            foreach (var u in up) { u.weight!.zero_(); u.bias!.zero_(); }
        RegisterComponents();
    }

    public override MethodConfig Config => config;

    public override Tensor AfterMlp(int block, Tensor mlpOutput)
    {
        using var scope = NewDisposeScope();
        // The adapter keeps its own (float32) dtype whatever the frozen backbone runs in.
        var a = up[block].forward(functional.gelu(down[block].forward(mlpOutput.to(down[block].weight!.dtype))));
        return (mlpOutput + a.to(mlpOutput.dtype)).MoveToOuterDisposeScope();
    }
}
