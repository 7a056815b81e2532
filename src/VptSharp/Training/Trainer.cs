using System.Diagnostics;
using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;
using VptSharp.IO;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Training;

public sealed record StepProgress(int Epoch, int Epochs, int Step, int StepsPerEpoch, double Loss, double Accuracy, double ImagesPerSecond, double LearningRate);

/// <param name="Precision">What the backbone computed in: "fp32" or "bf16".</param>
public sealed record EpochMetrics(int Epoch, double TrainLoss, double TrainTop1, double? ValTop1, double? ValLoss, double LearningRate, double Seconds, double ImagesPerSecond,
    string? Precision = null);

/// <summary>The parts of a training step, in order, as <see cref="Trainer.TrainStep"/> reports them.</summary>
public enum StepPhase { Forward, Backward, Optimizer }

public sealed record TrainResult(IReadOnlyList<EpochMetrics> History, double? BestValTop1, int BestEpoch, string? BestTaskPath, string? LastTaskPath);

/// <summary>What a task file records besides tensors; when given, the trainer writes best.vpt and last.vpt.</summary>
public sealed record TaskContext(BackboneRef Backbone, string[] Classes, Preprocessing Preprocessing);

/// <summary>
/// Trains a <see cref="PromptedModel"/>'s trainable parameters with the paper's recipe. Each epoch: a seeded
/// shuffle and dropout seed (so a resumed run repeats an uninterrupted one exactly), a dispose scope per step,
/// a finite-loss check, validation, an atomic checkpoint (tensors + optimizer + state) and best/last task files.
/// </summary>
public sealed class Trainer(TrainOptions options)
{
    public TrainOptions Options { get; } = options;
    public event Action<StepProgress>? Step;
    public event Action<EpochMetrics>? EpochEnd;
    public event Action<string>? Log;

    const string StateFile = "train-state.json";

    sealed record State(int EpochsDone, long GlobalStep, double? BestVal, int BestEpoch, string Checkpoint, List<EpochMetrics> History);

    public TrainResult Fit(PromptedModel model, ImageDataset train, ImageDataset? val, Preprocessing pre, TaskContext? task = null,
        CancellationToken ct = default)
    {
        Options.Validate();
        if (train.Count == 0) throw new ArgumentException("the training set is empty");
        var device = Devices.Parse(Options.Device);
        manual_seed(Options.Seed);
        model.MoveTo(device);
        model.SelectTrainable();

        var trainable = model.TrainableParameters();
        var optimizer = MakeOptimizer(trainable);
        bool cached = TrainsOnCachedFeatures(model, pre);
        bool lbfgs = Options.Optimizer == OptimizerKind.Lbfgs;
        if (lbfgs && !(cached && model.method.Config.Method == "linear"))
            throw new InvalidSettingException("optimizer", "lbfgs", model.method.Config.Method != "linear"
                ? $"solves a linear head on cached features (method linear); {model.method.Config.Method} trains otherwise: use sgd or adamw"
                : "needs cached features: plain resizing (no crop-flip augmentation)");
        var loader = new BatchLoader(train, new ImageTransform(pre, train: true), Options.BatchSize, shuffle: true, Options.Seed, Options.Workers);
        int steps = loader.BatchesPerEpoch;
        long total = (long)steps * Options.Epochs, warm = (long)steps * Options.WarmupEpochs;

        var history = new List<EpochMetrics>();
        int startEpoch = 0; long globalStep = 0; double? best = null; int bestEpoch = -1;
        string? outDir = Options.OutDir;
        if (outDir is not null) Directory.CreateDirectory(outDir);
        if (Options.Resume && outDir is not null && File.Exists(Path.Combine(outDir, StateFile)))
        {
            var st = RunFolder.ReadState<State>(Path.Combine(outDir, StateFile), s =>
                s.Checkpoint is null || !RunFolder.IsCheckpointName(s.Checkpoint) ? "checkpoint" : s.History is null || s.History.Count != s.EpochsDone ? "history"
                : s.EpochsDone < 1 ? "epochs_done" : s.GlobalStep < 0 ? "global_step" : s.BestEpoch != -1 && (s.BestEpoch < 1 || s.BestEpoch > s.EpochsDone) ? "best_epoch" : null);
            // A kill after the commit point may have left the publish step undone; finish it.
            RunFolder.Publish(outDir, st.Checkpoint);
            LoadTrainable(model, Path.Combine(outDir, st.Checkpoint + ".safetensors"));
            RunFolder.LoadOptimizer(optimizer, Path.Combine(outDir, st.Checkpoint + ".optim"));
            (startEpoch, globalStep, best, bestEpoch) = (st.EpochsDone, st.GlobalStep, st.BestVal, st.BestEpoch);
            history.AddRange(st.History);
            if (task is not null)
            {
                // best.vpt / last.vpt must hold the epochs the state names; a file of the checkpoint's own epoch can be remade.
                var (lastOk, bestOk) = RunFolder.TaskFilesMatch(outDir, startEpoch, bestEpoch);
                if (!lastOk) TaskFile(model, task, history[startEpoch - 1]).Save(Path.Combine(outDir, "last.vpt"));
                if (!bestOk && bestEpoch == startEpoch) TaskFile(model, task, history[startEpoch - 1]).Save(Path.Combine(outDir, "best.vpt"));
                else if (!bestOk)
                    throw new CheckpointException($"{Path.Combine(outDir, "best.vpt")}: does not hold epoch {bestEpoch}, the best epoch {StateFile} records " +
                        "(changed outside training); restore it", setting: "out-dir");
            }
            AtomicFile.WriteAllText(Path.Combine(outDir, "metrics.jsonl"), string.Concat(history.Select(h => JsonSerializer.Serialize(h, JsonFormat.Options) + "\n")));
            Log?.Invoke($"resumed from {outDir} after epoch {startEpoch}");
        }
        else if (outDir is not null)
        {
            // A fresh run: an earlier run's state goes first (a kill now must not resume it onto this run's files),
            // then its checkpoints and any leftovers of a run killed before its first commit.
            File.Delete(Path.Combine(outDir, StateFile));
            RunFolder.Publish(outDir, null);
        }
        if (startEpoch == 0 && Options.HeadInit != HeadInit.Kind.Reference) HeadInit.Apply(model.head, Options.HeadInit); // the model was built with the reference's
        if (startEpoch == 0 && ClsPrototypes.InitializeIfRequested(model, train, pre, Options))
            Log?.Invoke($"prompts initialised with the {train.Classes.Count} class prototypes (mean final CLS embedding per class)");

        Tensor? trainFeat = null, valFeat = null, trainLab = null, valLab = null;
        if (cached)
        {
            Log?.Invoke("caching frozen features (method trains only the head)");
            trainFeat = OnDevice(Featurize(model, train, pre), device);
            trainLab = tensor(train.Labels().Select(l => (long)l).ToArray(), device: device);
            if (val is not null)
            {
                valFeat = OnDevice(Featurize(model, val, pre), device);
                valLab = tensor(val.Labels().Select(l => (long)l).ToArray(), device: device);
            }
        }

        var tb = outDir is null ? null : torch.utils.tensorboard.SummaryWriter(Path.Combine(outDir, "tensorboard"));
        int stopAt = Options.StopAfterEpochs is int k ? Math.Min(Options.Epochs, startEpoch + k) : Options.Epochs;
        for (int epoch = startEpoch; epoch < stopAt; epoch++)
        {
            ct.ThrowIfCancellationRequested();
            manual_seed(Options.Seed * 1000L + epoch);
            model.train();
            var clock = Stopwatch.StartNew();
            double lossSum = 0; int correct = 0, seen = 0;
            double lr = 0;
            int step = 0;
            if (lbfgs)
            {
                // The epoch's loss is the solve's objective, penalty included: the cross-entropy alone may rise as the
                // penalty trades against it, which a sweep's divergence rule (RunResult.LossRose) would misread.
                var (loss, right) = LbfgsHead.Solve(model, trainFeat!, trainLab!, Options.WeightDecay, Options.LbfgsIterationsPerEpoch,
                    Options.LbfgsStandardize, Options.LabelSmoothing, outDir);
                int n = (int)trainFeat!.shape[0];
                (lossSum, seen, correct, step) = (loss * n, n, right, 1);
                globalStep++;
                Step?.Invoke(new StepProgress(epoch + 1, Options.Epochs, 1, 1, loss, (double)right / n, n / clock.Elapsed.TotalSeconds, 0));
            }
            else foreach (var (x, y, n) in Batches(loader, epoch, cached, trainFeat, trainLab, pre, device, ct))
            {
                using var scope = NewDisposeScope();
                lr = Options.LrPerStep ? WarmupCosine.At(globalStep, total, warm, Options.PeakLr)
                    : WarmupCosine.AtEpoch(epoch, Options.Epochs, Options.WarmupEpochs, Options.PeakLr);
                var (lv, right) = TrainStep(model, optimizer, x, y, lr, onFeatures: cached, where: $"at epoch {epoch + 1}, step {step + 1}");
                lossSum += lv * n; seen += n;
                correct += right;
                globalStep++; step++;
                x.Dispose(); y.Dispose();
                Step?.Invoke(new StepProgress(epoch + 1, Options.Epochs, step, steps, lossSum / seen, (double)correct / seen, seen / clock.Elapsed.TotalSeconds, lr));
            }
            double trainSecs = clock.Elapsed.TotalSeconds;
            double? valTop1 = null, valLoss = null;
            if (val is not null && val.Count > 0)
            {
                var r = cached ? Evaluation.EvaluateHead(model, valFeat!, valLab!) : Evaluation.Evaluate(model, val, pre, Options.BatchSize, Options.Device, Options.Workers);
                valTop1 = r.Top1; valLoss = r.Loss;
            }
            if (valLoss is double vl && !double.IsFinite(vl))
                throw new TrainingDivergedException($"validation loss became {vl} after epoch {epoch + 1} (lr {lr:G3})", outDir);
            var m = new EpochMetrics(epoch + 1, lossSum / seen, (double)correct / seen, valTop1, valLoss, lr, clock.Elapsed.TotalSeconds, seen / trainSecs,
                model.BackboneDtype == ScalarType.BFloat16 ? "bf16" : "fp32");
            history.Add(m);
            bool improved = valTop1 is double v && (best is null || v > best);
            if (improved) { best = valTop1; bestEpoch = epoch + 1; }
            bool noVal = val is null || val.Count == 0;
            if (noVal) bestEpoch = epoch + 1; // without validation, "best" is the latest
            if (outDir is not null) SaveEpoch(model, optimizer, outDir, epoch + 1, globalStep, best, bestEpoch, history, task, improved || noVal, tb, m);
            EpochEnd?.Invoke(m);
        }

        trainFeat?.Dispose(); valFeat?.Dispose(); trainLab?.Dispose(); valLab?.Dispose();
        string? bestPath = outDir is not null && task is not null ? Path.Combine(outDir, "best.vpt") : null;
        string? lastPath = outDir is not null && task is not null ? Path.Combine(outDir, "last.vpt") : null;
        return new TrainResult(history, best, bestEpoch, bestPath, lastPath);
    }

    /// <summary>
    /// One optimizer step exactly as <see cref="Fit"/> takes it (what `vpt bench` times): learning rate, forward (or the
    /// head alone when <paramref name="x"/> holds cached features), cross-entropy, a finite-loss check before any update
    /// (<see cref="TrainingDivergedException"/>, naming <paramref name="where"/>), backward, optimizer step. Call it inside a
    /// dispose scope; returns the loss and how many of the batch the pre-step logits got right.
    /// </summary>
    public (float Loss, int Correct) TrainStep(PromptedModel model, OptimizerHelper optimizer, Tensor x, Tensor y, double lr,
        bool onFeatures = false, string? where = null, Action<StepPhase>? phaseDone = null)
    {
        foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
        var logits = onFeatures ? model.ForwardHead(x) : model.forward(x);
        var loss = nn.functional.cross_entropy(logits, y, label_smoothing: Options.LabelSmoothing);
        float lv = loss.item<float>();
        if (!float.IsFinite(lv))
            throw new TrainingDivergedException($"loss became {lv}{(where is null ? "" : " " + where)} (lr {lr:G3})", Options.OutDir);
        phaseDone?.Invoke(StepPhase.Forward);
        optimizer.zero_grad();
        loss.backward();
        phaseDone?.Invoke(StepPhase.Backward);
        optimizer.step();
        phaseDone?.Invoke(StepPhase.Optimizer);
        return (lv, (int)logits.argmax(1).eq(y).sum().item<long>());
    }

    /// <summary>The optimizer <see cref="Fit"/> uses for a model (see <see cref="TrainStep"/>); the model's trainable set must be selected.</summary>
    public OptimizerHelper CreateOptimizer(PromptedModel model) => MakeOptimizer(model.TrainableParameters());

    IEnumerable<(Tensor X, Tensor Y, int N)> Batches(BatchLoader loader, int epoch, bool cached, Tensor? feats, Tensor? labels,
        Preprocessing pre, Device device, CancellationToken ct)
    {
        if (cached)
        {
            var order = loader.Order(epoch);
            for (int s = 0; s < order.Length; s += Options.BatchSize)
            {
                var idx = order.AsSpan(s, Math.Min(Options.BatchSize, order.Length - s)).ToArray().Select(i => (long)i).ToArray();
                using var it = tensor(idx, device: device);
                yield return (feats!.index_select(0, it), labels!.index_select(0, it), idx.Length);
            }
            yield break;
        }
        foreach (var b in loader.Epoch(epoch, ct))
            yield return (Evaluation.ToTensor(b, pre.ImageSize, device), tensor(b.Labels, device: device), b.Count);
    }

    /// <summary>The tensor on a device, keeping exactly one live wrapper of it (an orphaned wrapper's finalizer would free it).</summary>
    static Tensor OnDevice(Tensor t, Device device)
    {
        if (t.device_type == device.type && (device.index < 0 || t.device_index == device.index)) return t;
        var moved = t.to(device);
        t.Dispose();
        return moved;
    }

    /// <summary>Whether <see cref="Fit"/> trains the head on features computed once (frozen features, no augmentation).</summary>
    public bool TrainsOnCachedFeatures(PromptedModel model, Preprocessing pre) =>
        Options.CacheFeatures && model.method.FeaturesAreFrozen && pre.Resize == ResizeMode.Plain;

    /// <summary>Frozen features of a dataset: from <see cref="Features"/> when set, else computed now.</summary>
    Tensor Featurize(PromptedModel model, ImageDataset data, Preprocessing pre) =>
        Features?.Get(model, data, pre, Options.BatchSize, Options.Device, Options.Workers)
        ?? Evaluation.Features(model, data, pre, Options.BatchSize, Options.Device, Options.Workers);

    /// <summary>SGD (or AdamW) with the reference's two weight-decay groups (<see cref="Recipe.WeightDecayGroups"/>). For
    /// L-BFGS, an SGD that never steps, so checkpoints keep one format: <see cref="LbfgsHead"/> keeps no state across epochs.</summary>
    OptimizerHelper MakeOptimizer(IReadOnlyList<(string Name, Parameter Param)> trainable)
    {
        var (decay, noDecay) = Recipe.WeightDecayGroups(trainable, Options.Optimizer);
        double lr = Options.PeakLr;
        if (Options.Optimizer == OptimizerKind.AdamW)
        {
            double wd = Options.WeightDecay > 0 ? Options.AdamWDecay ?? Options.WeightDecay : 0;
            return optim.AdamW([new AdamW.ParamGroup(decay, lr, 0.9, 0.999, Recipe.AdamWEpsilon, wd),
                                new AdamW.ParamGroup(noDecay, lr, 0.9, 0.999, Recipe.AdamWEpsilon, 0.0)], lr);
        }
        return optim.SGD([new SGD.ParamGroup(decay, lr, Options.Momentum, 0, Options.WeightDecay, false, false),
                          new SGD.ParamGroup(noDecay, lr, Options.Momentum, 0, 0.0, false, false)], lr, Options.Momentum);
    }

    /// <summary>Where cached frozen features come from when several runs share them (a sweep's task); null computes them per run.</summary>
    public FeatureMemo? Features { get; init; }

    /// <summary>Test seam: called with the name of each write of an epoch's save, in order ("tensors", "optimizer",
    /// "last", "best", "state", "publish", "metrics"); throwing there leaves the folder as a kill at that point would.</summary>
    public Action<int, string>? BeforeSaveStep { get; set; }

    /// <summary>
    /// Crash-safe save. Everything new is written under this epoch's checkpoint name first (tensors, optimizer, staged
    /// last/best task files); train-state.json is the commit point; only then are the staged task files moved to
    /// last.vpt / best.vpt and older checkpoints deleted. A kill before the commit resumes from the previous epoch (the
    /// staged files are discarded); a kill after it resumes from this one and finishes the publish step
    /// (<see cref="RunFolder.Publish"/>). So best.vpt always holds the epoch train-state.json names as best.
    /// </summary>
    void SaveEpoch(PromptedModel model, OptimizerHelper optimizer, string outDir, int epochsDone, long globalStep, double? best, int bestEpoch,
        List<EpochMetrics> history, TaskContext? task, bool saveBest, SummaryWriter? tb, EpochMetrics m)
    {
        string ckpt = $"ckpt-e{epochsDone:D4}";
        BeforeSaveStep?.Invoke(epochsDone, "tensors");
        SafetensorsFile.Save(Path.Combine(outDir, ckpt + ".safetensors"), model.TaskTensors().ToDictionary(p => p.Name, p => (Tensor)p.Param));
        BeforeSaveStep?.Invoke(epochsDone, "optimizer");
        AtomicFile.WriteVia(Path.Combine(outDir, ckpt + ".optim"), tmp => optimizer.save_state_dict(tmp));
        if (task is not null)
        {
            var artifact = TaskFile(model, task, m);
            BeforeSaveStep?.Invoke(epochsDone, "last");
            artifact.Save(Path.Combine(outDir, ckpt + ".last.vpt"));
            if (saveBest)
            {
                BeforeSaveStep?.Invoke(epochsDone, "best");
                artifact.Save(Path.Combine(outDir, ckpt + ".best.vpt"));
            }
        }
        BeforeSaveStep?.Invoke(epochsDone, "state");
        AtomicFile.WriteAllText(Path.Combine(outDir, StateFile),
            JsonSerializer.Serialize(new State(epochsDone, globalStep, best, bestEpoch, ckpt, history), JsonFormat.PascalIndented));
        BeforeSaveStep?.Invoke(epochsDone, "publish");
        RunFolder.Publish(outDir, ckpt);
        BeforeSaveStep?.Invoke(epochsDone, "metrics");
        AtomicFile.WriteAllText(Path.Combine(outDir, "metrics.jsonl"),
            string.Concat(history.Select(h => JsonSerializer.Serialize(h, JsonFormat.Options) + "\n")));
        if (tb is not null)
        {
            tb.add_scalar("train/loss", (float)m.TrainLoss, m.Epoch);
            tb.add_scalar("train/top1", (float)m.TrainTop1, m.Epoch);
            tb.add_scalar("train/lr", (float)m.LearningRate, m.Epoch);
            if (m.ValTop1 is double v) tb.add_scalar("val/top1", (float)v, m.Epoch);
        }
    }

    static TaskArtifact TaskFile(PromptedModel model, TaskContext task, EpochMetrics m)
    {
        var metrics = new Dictionary<string, double> { ["epoch"] = m.Epoch, ["train_loss"] = m.TrainLoss, ["train_top1"] = m.TrainTop1 };
        if (m.ValTop1 is double vt) metrics["val_top1"] = vt;
        return TaskArtifact.FromModel(model, task.Backbone, task.Classes, task.Preprocessing, metrics);
    }

    static void LoadTrainable(PromptedModel model, string path)
    {
        var saved = SafetensorsFile.Load(path);
        using var _ = no_grad();
        foreach (var (name, p) in model.TaskTensors())
        {
            if (!saved.TryGetValue(name, out var t)) throw new CheckpointException($"{path}: checkpoint lacks '{name}'; it belongs to another run", setting: "out-dir");
            if (!t.shape.SequenceEqual(p.shape))
                throw new CheckpointException($"{path}: '{name}' has shape [{string.Join(",", t.shape)}] but this run's method makes [{string.Join(",", p.shape)}]; " +
                    "the interrupted run had other method settings (e.g. another prompt length)", setting: "out-dir");
            p.copy_(t);
        }
    }
}
