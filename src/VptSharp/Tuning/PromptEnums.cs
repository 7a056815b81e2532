namespace VptSharp.Tuning;

public enum PromptLocation
{
    /// <summary>p tokens inserted after CLS (the paper's default).</summary>
    Prepend,
    /// <summary>Prompts added element-wise to every token, CLS included (the reference's "add" / "add-1"); sequence length
    /// unchanged. p = 1 (one vector added to every token) or p = 1 + number of patches (prompt i added to token i).</summary>
    Add,
    /// <summary>p learnable patch-sized pixel blocks, embedded by the frozen patch projection, prepended after CLS (input level).</summary>
    PrependPixel,
    /// <summary>p learnable extra input channels; the patch projection grows p input channels and trains whole (the reference's "below").</summary>
    ConcatChannel,
}

public enum PromptInit
{
    /// <summary>Xavier-uniform over a patch-sized fan-in (the reference default).</summary>
    Random,
    /// <summary>Per-class mean of the frozen backbone's final CLS embedding on the train split, one prompt per class
    /// (paper appendix B); set by the trainer before the first step.</summary>
    ClsPrototype,
}

public enum PromptOutput
{
    /// <summary>The final CLS token (default).</summary>
    Cls,
    /// <summary>Mean of the image-patch outputs.</summary>
    ImagePool,
    /// <summary>Mean of the prompt outputs.</summary>
    PromptPool,
    /// <summary>Mean of prompt and image-patch outputs (all but CLS).</summary>
    GlobalPool,
}

public enum PromptSharing
{
    /// <summary>p distinct prompts per prompted block.</summary>
    None,
    /// <summary>One vector per block, repeated p times ("shared-intra").</summary>
    Intra,
    /// <summary>The same p prompts at every prompted block ("shared-inter").</summary>
    Inter,
    /// <summary>One vector, repeated p times, at every prompted block ("shared-all").</summary>
    All,
}
