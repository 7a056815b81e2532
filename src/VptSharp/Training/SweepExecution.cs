using System.Diagnostics;
using VptSharp.Data;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Training;

// Executing one run of a sweep: open the task's splits, build the model, train with the run's recipe (resuming a killed
// run from its checkpoints), score on val or test, and undo any in-place training of the shared backbone.
public sealed partial class Sweep
{
    /// <summary>Where frozen features of the sweep's splits are kept for all its runs and processes (<see cref="FeatureMemo"/>).</summary>
    string FeatureFolder => Path.Combine(outDir, "features");

    /// <summary>One run in this process, on its own (what a child process of a sweep does); returns the result without writing it.</summary>
    public RunResult ExecuteOne(RunSpec spec, CancellationToken ct = default)
    {
        using var snapshot = new BackboneSnapshot(backbone.Model);
        using var data = new TaskData(suite, suite.Task(spec.Task), FeatureFolder, backbone.Sha256);
        return Execute(spec, data, snapshot, ct);
    }

    /// <summary>Trains one run (resuming its checkpoints if a previous process was killed mid-run) and scores it.</summary>
    RunResult Execute(RunSpec spec, TaskData data, BackboneSnapshot snapshot, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var cfg = MethodRegistry.FromOptions(spec.Method, spec.MethodOptions());
        bool tuning = spec.Phase is "tune" or "depth-tune";
        var train = tuning ? data.Train : data.TrainVal;
        if (spec.Fraction < 1) train = train.SubsampleBalanced(spec.Fraction, spec.Seed);
        var eval = tuning ? data.Val : data.Test;
        var pre = backbone.Preprocessing(data.Task.Augment == "crop-flip" ? ResizeMode.CropFlip : ResizeMode.Plain);
        string work = Path.Combine(outDir, "work", spec.Task, spec.Method, spec.Id);
        var recipe = Recipe.For(spec.Method); // the reference's optimizer, warm-up and batch for the method
        int batch = options.BatchSize ?? recipe.BatchSize;
        var opts = new TrainOptions
        {
            Epochs = options.Epochs, WarmupEpochs = Math.Min(options.WarmupEpochs ?? recipe.WarmupEpochs, Math.Max(0, options.Epochs - 1)), BatchSize = batch,
            BaseLr = spec.Lr, WeightDecay = spec.WeightDecay,
            Optimizer = options.LinearLbfgs && spec.Method == "linear" ? OptimizerKind.Lbfgs : recipe.Optimizer, LbfgsStandardize = options.LbfgsStandardize, HeadInit = options.HeadInit,
            Seed = StableSeed.Of(spec.Seed, 7919), OutDir = work, Resume = true, Workers = options.Workers, Device = options.Device,
        };
        manual_seed(opts.Seed); // prompt and head init
        using var model = PromptedModel.Create(backbone.Model, cfg, data.Classes);
        bool touchesBackbone = model.method.BackboneParametersToTrain(backbone.Model).Any();
        bool wasHalf = model.BackboneDtype != ScalarType.Float32;
        var precision = model.ApplyPrecision(touchesBackbone ? Hardware.Precision.Fp32 : options.Precision, Devices.Parse(options.Device).type);
        // Back to float32 after a bfloat16 run: the cast cannot bring back the pretrained weights' low bits; the snapshot can.
        if (wasHalf && precision.Dtype == ScalarType.Float32) snapshot.Restore();
        string precisionName = precision.Dtype == ScalarType.BFloat16 ? "bf16" : "fp32";
        try
        {
            var trainer = new Trainer(opts) { Features = data.Features };
            trainer.EpochEnd += m => EpochEnd?.Invoke(m);
            IReadOnlyList<EpochMetrics> history;
            try { history = trainer.Fit(model, train, null, pre, null, ct).History; }
            catch (TrainingDivergedException e)
            {
                Log?.Invoke($"{spec.Task} / {spec.Method} / {spec.Id} diverged: {e.Message}");
                Directory.Delete(work, recursive: true);
                return new RunResult
                {
                    Spec = spec, Diverged = true, TrainableParams = model.TrainableCount, BackboneParams = backbone.Model.BackboneParameterCount,
                    TrainImages = train.Count, EvalImages = eval.Count, FinalTrainLoss = double.NaN, Seconds = clock.Elapsed.TotalSeconds,
                    Backbone = backbone.Source, BackboneSha256 = backbone.Sha256, BackboneArchitecture = backbone.Model.Architecture,
                    Threads = get_num_threads(), FinishedUtc = DateTime.UtcNow, Precision = precisionName,
                };
            }
            int evalBatch = Math.Max(Math.Min(batch, 256), 128);
            EvalResult score;
            if (trainer.TrainsOnCachedFeatures(model, pre))
            {
                using var features = data.Features.Get(model, eval, pre, evalBatch, options.Device, options.Workers);
                using var labels = tensor(eval.Labels().Select(l => (long)l).ToArray());
                var device = Devices.Parse(options.Device);
                using var onDevice = features.to(device);
                using var labelsOnDevice = labels.to(device);
                score = Evaluation.EvaluateHead(model, onDevice, labelsOnDevice);
            }
            else score = Evaluation.Evaluate(model, eval, pre, evalBatch, options.Device, options.Workers);
            var result = new RunResult
            {
                Spec = spec, ValTop1 = tuning ? score.Top1 : null, TestTop1 = tuning ? null : score.Top1,
                TrainableParams = model.TrainableCount, BackboneParams = backbone.Model.BackboneParameterCount,
                TrainImages = train.Count, EvalImages = eval.Count, FinalTrainLoss = history[^1].TrainLoss, FirstTrainLoss = history[0].TrainLoss,
                Seconds = clock.Elapsed.TotalSeconds, Backbone = backbone.Source, BackboneSha256 = backbone.Sha256,
                BackboneArchitecture = backbone.Model.Architecture, Threads = get_num_threads(), FinishedUtc = DateTime.UtcNow, Precision = precisionName,
            };
            Directory.Delete(work, recursive: true); // checkpoints of a finished run are no longer needed
            return result;
        }
        finally
        {
            // Methods that train backbone tensors edit the shared backbone in place: put the pretrained weights back.
            if (touchesBackbone) snapshot.Restore();
        }
    }

    /// <summary>A task's splits, opened once with one class list, and their frozen features once computed.</summary>
    sealed class TaskData : IDisposable
    {
        public FeatureMemo Features { get; }
        public SuiteTask Task { get; }
        public ImageDataset Train { get; }
        public ImageDataset Val { get; }
        public ImageDataset TrainVal { get; }
        public ImageDataset Test { get; }
        public int Classes => TrainVal.Classes.Count;

        public TaskData(Suite suite, SuiteTask task, string featureFolder, string backboneSha256)
        {
            Task = task;
            Features = new FeatureMemo(Path.Combine(featureFolder, task.Name), backboneSha256);
            TrainVal = DatasetSpec.Open(suite.Resolve(task.TrainVal));
            Train = DatasetSpec.Open(suite.Resolve(task.Train), TrainVal.Classes);
            Val = DatasetSpec.Open(suite.Resolve(task.Val), TrainVal.Classes);
            Test = DatasetSpec.Open(suite.Resolve(task.Test), TrainVal.Classes);
            if (task.Classes > 0 && TrainVal.Classes.Count != task.Classes)
                throw new ArgumentException($"task {task.Name}: {suite.Resolve(task.TrainVal)} has {TrainVal.Classes.Count} classes, the suite says {task.Classes}");
        }

        public void Dispose() => Features.Dispose();
    }
}
