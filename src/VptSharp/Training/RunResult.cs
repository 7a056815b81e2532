using System.Text.Json.Serialization;

namespace VptSharp.Training;

/// <summary>What a run measured; written atomically as JSON beside the others.</summary>
public sealed record RunResult
{
    public required RunSpec Spec { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? ValTop1 { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? TestTop1 { get; init; }
    public long TrainableParams { get; init; }
    public long BackboneParams { get; init; }
    public int TrainImages { get; init; }
    public int EvalImages { get; init; }
    public double FinalTrainLoss { get; init; }
    /// <summary>Mean training loss of the first epoch (absent in results written before it was recorded).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public double? FirstTrainLoss { get; init; }
    /// <summary>The loss ended above where it started: the run learned nothing stable (issue 13: a tuning run whose
    /// loss ends above its start counts as divergent and is never selected, even if its val score looks fine).</summary>
    [JsonIgnore] public bool LossRose => FirstTrainLoss is double first && double.IsFinite(first) && FinalTrainLoss > first;
    public double Seconds { get; init; }
    /// <summary>The frozen backbone's dtype in this run ("fp32" or "bf16"; absent in results written before it was recorded).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Precision { get; init; }
    /// <summary>The loss became non-finite: the run has no score (a tuning run is then never selected).</summary>
    public bool Diverged { get; init; }
    /// <summary>The run failed twice (e.g. its process crashed): no score; delete this file to try it again.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Error { get; init; }
    public string Backbone { get; init; } = "";
    public string BackboneSha256 { get; init; } = "";
    /// <summary><see cref="Backbones.Backbone.Architecture"/> of the run's backbone (absent in results written before it
    /// was recorded): the same weights under another architecture are another backbone.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? BackboneArchitecture { get; init; }
    public int Threads { get; init; }
    public DateTime FinishedUtc { get; init; }
}
