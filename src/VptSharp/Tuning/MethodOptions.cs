namespace VptSharp.Tuning;

/// <summary>The method flags of `vpt train`; each method reads what concerns it.</summary>
public sealed record MethodOptions
{
    public int Prompts { get; init; } = 50;
    public double? PromptDropout { get; init; }
    public int ProjectDim { get; init; } = -1;
    /// <summary>k of partial-k / mlp-k.</summary>
    public int? K { get; init; }
    /// <summary>Adapter reduction factor r.</summary>
    public int? Reduction { get; init; }
    /// <summary>Adapter initialisation (the reference's zero-both unless set).</summary>
    public AdapterInit? AdapterInit { get; init; }
    public PromptOutput PromptOutput { get; init; } = PromptOutput.Cls;
    public PromptSharing PromptSharing { get; init; } = PromptSharing.None;
    public PromptLocation PromptLocation { get; init; } = PromptLocation.Prepend;
    public PromptInit PromptInit { get; init; } = PromptInit.Random;
    /// <summary>vpt-pad: how the pad strips start (the reference's pixel-space U(0, 1) unless set).</summary>
    public PadInit? PadInit { get; init; }
    /// <summary>Sidetune: channels of the side network's first conv stage.</summary>
    public int? SideWidth { get; init; }
    /// <summary>VPT-deep prompted blocks, 1-based inclusive (either order).</summary>
    public (int First, int Last)? PromptDepth { get; init; }
    /// <summary>VPT-deep in its exact key/value prefix form: null = wherever exact, true = required, false = token form
    /// (<see cref="PromptConfig.PrefixForm"/>).</summary>
    public bool? PrefixForm { get; init; }
}
