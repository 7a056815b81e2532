using System.Text.Json.Serialization;

namespace VptSharp.Training;

/// <summary>
/// The paper's protocol (§4.1, appendix A) over a suite: per task and method, a grid over lr × weight decay
/// (× prompt length for VPT, × reduction for adapters) trained on the tuning split and scored on val; the best val
/// top-1 (ties → smaller lr, then smaller weight decay, then fewer parameters) is then trained on train+val with
/// several seeds and scored on test. Optional curves (data fraction, prompt length, prompt depth) reuse the
/// selected config.
/// </summary>
public sealed record SweepOptions
{
    public required IReadOnlyList<string> Methods { get; init; }
    /// <summary>Base lr grid (at batch 256) for SGD methods.</summary>
    public IReadOnlyList<double> Lrs { get; init; } = [2.5, 0.5];
    /// <summary>Base lr grid for the reference's fine-tuning family (AdamW: full, partial-k, bias, adapter; <see cref="Recipe.For"/>).</summary>
    public IReadOnlyList<double> WholeBackboneLrs { get; init; } = [1e-3, 1e-4];
    public IReadOnlyList<double> WeightDecays { get; init; } = [1e-4];
    /// <summary>Prompt lengths searched for prompt methods (paper: 1, 5, 10, 50, 100, 200).</summary>
    public IReadOnlyList<int> Prompts { get; init; } = [10];
    /// <summary>Pad-prompt widths (pixels per side) searched for vpt-pad (paper, ConvNets: 1, 3, 5, 7, 9, 11); a run's
    /// <see cref="RunSpec.Prompts"/> carries the width.</summary>
    public IReadOnlyList<int> PadPixels { get; init; } = [5];
    /// <summary>Adapter reductions searched (paper: 8, 64, 256).</summary>
    public IReadOnlyList<int> Reductions { get; init; } = [8];
    public int Epochs { get; init; } = 100;
    /// <summary>Warm-up epochs and batch size; null = each method's reference recipe (<see cref="Recipe.For"/>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? WarmupEpochs { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? BatchSize { get; init; }
    /// <summary>Seeds of the final runs (paper: 3 in the main text, 5 in the appendix).</summary>
    public int Seeds { get; init; } = 3;
    public int Workers { get; init; } = 2;
    public string Device { get; init; } = "cpu";
    /// <summary>The frozen backbone's precision for runs that train none of it (methods that do always run fp32). Fp32 by
    /// default, so a grid's numbers do not depend on which CPU ran it; auto or bf16 roughly halve the forward passes on
    /// avx512_bf16 CPUs and GPUs.</summary>
    [JsonConverter(typeof(PrecisionNameConverter))] public Hardware.Precision Precision { get; init; } = Hardware.Precision.Fp32;

    /// <summary>How every run's head starts (<see cref="TrainOptions.HeadInit"/>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public Tuning.HeadInit.Kind HeadInit { get; init; }
    /// <summary>Fig. 3: train+val fractions for extra final runs (1 seed each) with the selected config.</summary>
    public IReadOnlyList<double> Fractions { get; init; } = [];
    /// <summary>Fig. 6: prompt lengths for extra VPT final runs (1 seed each).</summary>
    public IReadOnlyList<int> CurvePrompts { get; init; } = [];
    /// <summary>Fig. 7: VPT-deep prompt depth ranges ("1-6", "12-7") for extra final runs (1 seed each).</summary>
    public IReadOnlyList<string> CurveDepths { get; init; } = [];
    /// <summary>"i/n": this machine runs the (task, method) pairs with stable hash % n == i, so sweeps spread over machines.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Shard { get; init; }
    /// <summary>Linear runs solve their head by full-batch L-BFGS on cached features (<see cref="LbfgsHead"/>): the wd grid
    /// is then their L2 grid, and the lr grid does not apply to them (one tuning run per L2 value).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool LinearLbfgs { get; init; }
    /// <summary>With <see cref="LinearLbfgs"/>: solve on standardised features (<see cref="TrainOptions.LbfgsStandardize"/>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool LbfgsStandardize { get; init; }
    /// <summary>Only these tasks (null = all).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<string>? Tasks { get; init; }

    /// <summary>A precision as its CLI name ("fp32", "auto", "bf16") in sweep.json, whatever serializer options are used.</summary>
    sealed class PrecisionNameConverter : JsonConverter<Hardware.Precision>
    {
        public override Hardware.Precision Read(ref System.Text.Json.Utf8JsonReader reader, Type type, System.Text.Json.JsonSerializerOptions options) =>
            Hardware.PrecisionPolicy.Parse(reader.GetString() ?? "");
        public override void Write(System.Text.Json.Utf8JsonWriter writer, Hardware.Precision value, System.Text.Json.JsonSerializerOptions options) =>
            writer.WriteStringValue(Hardware.PrecisionPolicy.NameOf(value));
    }
}
