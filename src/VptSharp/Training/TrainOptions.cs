namespace VptSharp.Training;

/// <summary>Sgd (momentum), AdamW, or Lbfgs: the linear head solved on cached features by full-batch L-BFGS
/// (<see cref="LbfgsHead"/>; method linear only).</summary>
public enum OptimizerKind { Sgd, AdamW, Lbfgs }

/// <summary>The paper's recipe (appendix A): SGD momentum 0.9, warm-up then cosine, lr = base_lr × batch / 256.</summary>
public sealed record TrainOptions
{
    public int Epochs { get; init; } = 100;
    public int BatchSize { get; init; } = 64;
    /// <summary>Learning rate at batch 256; the rate used is BaseLr × BatchSize / 256.</summary>
    public double BaseLr { get; init; } = 0.25;
    public double WeightDecay { get; init; } = 1e-4;
    public int WarmupEpochs { get; init; } = 10;
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Sgd;
    public double Momentum { get; init; } = 0.9;
    public int Seed { get; init; } = 42;
    /// <summary>Folder for checkpoints, task files and metrics; null keeps everything in memory.</summary>
    public string? OutDir { get; init; }
    /// <summary>Continue from OutDir's last checkpoint, if any.</summary>
    public bool Resume { get; init; }
    public int Workers { get; init; } = 2;
    public string Device { get; init; } = "cpu";
    /// <summary>Label smoothing for the cross-entropy (0 = none, as in the paper).</summary>
    public double LabelSmoothing { get; init; }
    /// <summary>Cache frozen features once when the method allows it (linear probing).</summary>
    public bool CacheFeatures { get; init; } = true;
    /// <summary>The learning rate changes every epoch (the reference: its scheduler steps once per epoch, warm-up from 0)
    /// unless this is set, which moves it every optimizer step.</summary>
    public bool LrPerStep { get; init; }
    /// <summary>AdamW's decay of non-bias parameters when <see cref="WeightDecay"/> is positive: the reference's fixed
    /// 0.01 (<see cref="Recipe.AdamWWeightDecay"/>); null uses <see cref="WeightDecay"/> itself.</summary>
    public double? AdamWDecay { get; init; } = Recipe.AdamWWeightDecay;
    /// <summary>Stop after this many epochs in this process (for tests of resume); null = run to the end.</summary>
    public int? StopAfterEpochs { get; init; }
    /// <summary>L-BFGS iterations per epoch (<see cref="OptimizerKind.Lbfgs"/>): each epoch restarts from the current
    /// head, then validates.</summary>
    public int LbfgsIterationsPerEpoch { get; init; } = 100;
    /// <summary>How the classification head starts (<see cref="HeadInit.Kind"/>); the reference's unless asked.</summary>
    public Tuning.HeadInit.Kind HeadInit { get; init; } = Tuning.HeadInit.Kind.Reference;
    /// <summary>L-BFGS solves on standardised features rather than the features as they are (<see cref="LbfgsHead"/>).</summary>
    public bool LbfgsStandardize { get; init; }

    public double PeakLr => BaseLr * BatchSize / 256.0;

    public void Validate()
    {
        if (Epochs < 1) throw new InvalidSettingException("epochs", Epochs, "must be at least 1");
        if (BatchSize < 1) throw new InvalidSettingException("batch-size", BatchSize, "must be at least 1");
        if (!(BaseLr > 0)) throw new InvalidSettingException("base-lr", BaseLr, "must be positive");
        if (WeightDecay < 0) throw new InvalidSettingException("weight-decay", WeightDecay, "must be non-negative");
        if (WarmupEpochs < 0 || WarmupEpochs >= Epochs && Epochs > 1)
            throw new InvalidSettingException("warmup-epochs", WarmupEpochs, $"must be below the number of epochs ({Epochs})");
    }
}

/// <summary>Linear warm-up to the peak rate, then cosine decay to zero.</summary>
public static class WarmupCosine
{
    /// <summary>The reference's schedule (src/solver/lr_scheduler.py WarmupCosineSchedule, stepped once per epoch by
    /// src/engine/trainer.py): epoch e (0-based) trains at peak·e/W while e &lt; W — so the first epoch at 0 — then at
    /// peak·½(1 + cos(π·(e − W)/(T − W))).</summary>
    public static double AtEpoch(int epoch, int totalEpochs, int warmupEpochs, double peak)
    {
        if (epoch < warmupEpochs) return peak * epoch / Math.Max(1, warmupEpochs);
        double progress = (double)(epoch - warmupEpochs) / Math.Max(1, totalEpochs - warmupEpochs);
        return Math.Max(0, 0.5 * peak * (1 + Math.Cos(Math.PI * progress)));
    }

    /// <summary>Per optimizer step (<see cref="TrainOptions.LrPerStep"/>): warm-up reaches the peak at the last warm-up step.</summary>
    public static double At(long step, long totalSteps, long warmupSteps, double peak)
    {
        if (step < warmupSteps) return peak * (step + 1) / warmupSteps;
        long rest = Math.Max(1, totalSteps - warmupSteps);
        double progress = Math.Min(1.0, (double)(step - warmupSteps) / rest);
        return 0.5 * peak * (1 + Math.Cos(Math.PI * progress));
    }
}
