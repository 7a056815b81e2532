using System.Diagnostics;
using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Tuning;
using VptSharp.Training;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

public class TrainingTests
{
    static readonly Preprocessing Pre32 = new() { ImageSize = 32 };

    static (ImageDataset Train, ImageDataset Val) Fmnist(int n) =>
        DatasetSpec.Open($"fashion-mnist:train[0:{n}]@0,1,7,8").SplitTrainVal(0.25, 1);

    [Fact]
    public void VptDeepLearnsFashionMnistAboveChance()
    {
        var (train, val) = Fmnist(1000);
        var model = PromptedModel.Create(TinyVit(7), new PromptConfig { Tokens = 4, Deep = true }, 4);
        var opts = new TrainOptions { Epochs = 6, BatchSize = 32, BaseLr = 2.0, WarmupEpochs = 1, Seed = 3 };
        var r = new Trainer(opts).Fit(model, train, val, Pre32);
        Assert.True(r.History[^1].TrainLoss < 0.8 * r.History[0].TrainLoss, $"loss {r.History[0].TrainLoss:F3} → {r.History[^1].TrainLoss:F3}");
        Assert.True(r.BestValTop1 > 0.5, $"val top-1 {r.BestValTop1:P1} (chance 25%)");
    }

    [Fact]
    public void ResumedRunEqualsUninterruptedRun()
    {
        var (train, val) = Fmnist(200);
        var opts = new TrainOptions { Epochs = 3, BatchSize = 16, BaseLr = 1.0, WarmupEpochs = 1, Seed = 11 };
        string dirA = TempDir(), dirB = TempDir();

        var a = PromptedModel.Create(TinyVit(1), new PromptConfig { Tokens = 2, Deep = true, Dropout = 0.1 }, 4);
        new Trainer(opts with { OutDir = dirA }).Fit(a, train, val, Pre32);

        var b1 = PromptedModel.Create(TinyVit(1), new PromptConfig { Tokens = 2, Deep = true, Dropout = 0.1 }, 4);
        new Trainer(opts with { OutDir = dirB, StopAfterEpochs = 2 }).Fit(b1, train, val, Pre32);
        // A new process would start from fresh weights: so does this model (other init seed), then resumes.
        var b2 = PromptedModel.Create(TinyVit(1), new PromptConfig { Tokens = 2, Deep = true, Dropout = 0.1 }, 4);
        var rb = new Trainer(opts with { OutDir = dirB, Resume = true }).Fit(b2, train, val, Pre32);

        Assert.Equal(3, rb.History.Count);
        foreach (var ((name, pa), (_, pb)) in a.TrainableParameters().Zip(b2.TrainableParameters()))
            Assert.True(Same(pa, pb), $"{name} differs after resume");
        Assert.Equal(3, File.ReadAllLines(Path.Combine(dirB, "metrics.jsonl")).Length);
    }

    [Fact]
    public void NanLossStopsWithClearMessageAndKeepsLastGoodCheckpoint()
    {
        var (train, val) = Fmnist(100);
        string dir = TempDir();
        var opts = new TrainOptions { Epochs = 3, BatchSize = 16, BaseLr = 0.5, WarmupEpochs = 0, Seed = 2, OutDir = dir };
        var model = PromptedModel.Create(TinyVit(1), new LinearProbeConfig(), 4);
        new Trainer(opts with { StopAfterEpochs = 1, CacheFeatures = false }).Fit(model, train, val, Pre32);
        var state = File.ReadAllText(Path.Combine(dir, "train-state.json"));
        var exploded = PromptedModel.Create(TinyVit(1), new LinearProbeConfig(), 4);
        var e = Assert.Throws<TrainingDivergedException>(() =>
            new Trainer(opts with { BaseLr = 1e38, Resume = true, CacheFeatures = false }).Fit(exploded, train, val, Pre32));
        Assert.Contains("epoch 2", e.Message);
        Assert.Contains(dir, e.Message);
        Assert.Equal(state, File.ReadAllText(Path.Combine(dir, "train-state.json")));
        Assert.True(File.Exists(Path.Combine(dir, "ckpt-e0001.safetensors")));
    }

    [Fact]
    public void CachedLinearProbeMatchesUncached()
    {
        var (train, val) = Fmnist(160);
        var opts = new TrainOptions { Epochs = 3, BatchSize = 16, BaseLr = 1.0, WarmupEpochs = 1, Seed = 5 };
        var cached = PromptedModel.Create(TinyVit(2), new LinearProbeConfig(), 4);
        var rc = new Trainer(opts).Fit(cached, train, val, Pre32);
        var plain = PromptedModel.Create(TinyVit(2), new LinearProbeConfig(), 4);
        var rp = new Trainer(opts with { CacheFeatures = false }).Fit(plain, train, val, Pre32);
        Assert.True(MaxAbsDiff(cached.head.weight!, plain.head.weight!) < 1e-4);
        Assert.Equal(rc.BestValTop1, rp.BestValTop1);
    }

    /// <summary>A memo of frozen features computes each split once for all runs on it, and training from it gives the
    /// same head as computing the features per run; methods whose features train are refused.</summary>
    [Fact]
    public void FeatureMemoServesEveryRunOfASplitFromOneFeaturization()
    {
        var (train, val) = Fmnist(160);
        var backbone = TinyVit(2);
        var opts = new TrainOptions { Epochs = 2, BatchSize = 16, BaseLr = 1.0, WarmupEpochs = 0, Seed = 5 };
        using var memo = new FeatureMemo();
        var heads = new List<Tensor>();
        foreach (var lr in new[] { 1.0, 0.5 })
        {
            manual_seed(9);
            var model = PromptedModel.Create(backbone, new LinearProbeConfig(), 4);
            var fromMemo = new Trainer(opts with { BaseLr = lr }) { Features = memo }.Fit(model, train, val, Pre32);
            manual_seed(9);
            var alone = PromptedModel.Create(backbone, new LinearProbeConfig(), 4);
            var own = new Trainer(opts with { BaseLr = lr }).Fit(alone, train, val, Pre32);
            Assert.True(MaxAbsDiff(model.head.weight!, alone.head.weight!) < 1e-6);
            Assert.Equal(own.BestValTop1, fromMemo.BestValTop1);
            heads.Add(model.head.weight!.detach().clone());
        }
        Assert.Equal(2, memo.Computed); // train and val, once each, for both runs
        Assert.True(MaxAbsDiff(heads[0], heads[1]) > 1e-3, "the two learning rates trained different heads");

        // A dataset with an equal preprocessing (new arrays, same values) is served from the memo; another normalisation is not.
        var linear = PromptedModel.Create(backbone, new LinearProbeConfig(), 4);
        using (var a = memo.Get(linear, train, Pre32 with { Mean = [.. Pre32.Mean] }, 16, "cpu", 0))
            Assert.Equal(train.Count, (int)a.shape[0]);
        Assert.Equal(2, memo.Computed);
        using (var b = memo.Get(linear, train, Pre32 with { Std = [0.5f, 0.5f, 0.5f] }, 16, "cpu", 0)) { }
        Assert.Equal(3, memo.Computed);
        // The handle a caller disposed leaves the memo's own intact.
        using (var c = memo.Get(linear, val, Pre32, 16, "cpu", 0))
            Assert.True(float.IsFinite(c.sum().item<float>()));

        var prompted = PromptedModel.Create(backbone, new PromptConfig { Tokens = 2, Deep = true }, 4);
        Assert.Throws<InvalidOperationException>(() => memo.Get(prompted, train, Pre32, 16, "cpu", 0));

        // On disk: another process (another memo on the folder) reads the features back instead of computing them; a
        // damaged file is computed again and replaced; another backbone hash does not match.
        string dir = TempDir();
        using var expected = memo.Get(linear, train, Pre32, 16, "cpu", 0);
        using (var first = new FeatureMemo(dir, "sha-a")) first.Get(linear, train, Pre32, 16, "cpu", 0).Dispose();
        var file = Assert.Single(Directory.GetFiles(dir));
        using (var second = new FeatureMemo(dir, "sha-a"))
        {
            using var read = second.Get(linear, train, Pre32, 16, "cpu", 0);
            Assert.Equal(0, second.Computed);
            Assert.Equal(0.0, MaxAbsDiff(read, expected));
        }
        File.WriteAllBytes(file, File.ReadAllBytes(file)[..100]);
        using (var third = new FeatureMemo(dir, "sha-a"))
        {
            using var again = third.Get(linear, train, Pre32, 16, "cpu", 0);
            Assert.Equal(1, third.Computed);
            Assert.Equal(0.0, MaxAbsDiff(again, expected));
        }
        Assert.True(new FileInfo(file).Length > 100, "the damaged file was replaced");
        // A file of the right shape holding NaN, and one far larger than the features, are not used either.
        VptSharp.Checkpoints.SafetensorsFile.Save(file, new Dictionary<string, Tensor> { ["features"] = full_like(expected, double.NaN) });
        using (var nan = new FeatureMemo(dir, "sha-a")) { using var t = nan.Get(linear, train, Pre32, 16, "cpu", 0); Assert.Equal(1, nan.Computed); Assert.Equal(0.0, MaxAbsDiff(t, expected)); }
        VptSharp.Checkpoints.SafetensorsFile.Save(file, new Dictionary<string, Tensor> { ["features"] = expected, ["padding"] = zeros(1 << 16) });
        using (var huge = new FeatureMemo(dir, "sha-a")) { using var t = huge.Get(linear, train, Pre32, 16, "cpu", 0); Assert.Equal(1, huge.Computed); Assert.Equal(0.0, MaxAbsDiff(t, expected)); }
        using (var other = new FeatureMemo(dir, "sha-b")) other.Get(linear, train, Pre32, 16, "cpu", 0).Dispose();
        Assert.Equal(2, Directory.GetFiles(dir).Length);
        // The same weights (same seed, same shapes) under another head count compute other features: not served from the file.
        var oneHead = PromptedModel.Create(TinyVit(2, Tiny with { Heads = 1 }), new LinearProbeConfig(), 4);
        using (var heads1 = new FeatureMemo(dir, "sha-a"))
        {
            using var t = heads1.Get(oneHead, train, Pre32, 16, "cpu", 0);
            Assert.Equal(1, heads1.Computed);
            Assert.True(MaxAbsDiff(t, expected) > 1e-3, "one head and two heads give other features");
        }
        Assert.Equal(3, Directory.GetFiles(dir).Length);
    }

    /// <summary>--head-init: the first step's loss is ln C exactly from a zero head, near it from trunc-normal (std 0.01),
    /// and far above it from the reference's kaiming fan-out head (the large first losses of short budgets, issue 13).</summary>
    [Fact]
    public void HeadInitSetsWhereTheFirstStepStarts()
    {
        var (train, _) = Fmnist(128);
        double FirstLoss(HeadInit.Kind kind)
        {
            var model = PromptedModel.Create(TinyVit(4), new LinearProbeConfig(), 4);
            var trainer = new Trainer(new TrainOptions { Epochs = 1, BatchSize = 32, BaseLr = 0.5, WarmupEpochs = 0, Seed = 2, HeadInit = kind });
            double? first = null;
            trainer.Step += s => first ??= s.Loss;
            trainer.Fit(model, train, null, Pre32);
            return first!.Value;
        }
        double zero = FirstLoss(HeadInit.Kind.Zero), small = FirstLoss(HeadInit.Kind.TruncNormal), reference = FirstLoss(HeadInit.Kind.Reference);
        Assert.Equal(Math.Log(4), zero, 5);
        Assert.True(Math.Abs(small - Math.Log(4)) < 0.1, $"trunc-normal first loss {small:F3}");
        Assert.True(reference > Math.Log(4) + 0.5, $"reference first loss {reference:F3}");
        Assert.Throws<ArgumentException>(() => HeadInit.Parse("xavier"));
    }

    /// <summary>L-BFGS solves the linear head to the optimum of its convex objective — mean cross-entropy + λ/2·‖W'‖², on the
    /// features as they are or standardised (W' = W·σ the weights on them): the gradient vanishes there, every other head
    /// (SGD's after the same epochs) scores higher on it, and the epochs' recorded objective never rises. Methods that
    /// train anything but a linear head on cached features are refused.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LbfgsSolvesTheLinearHeadToItsOptimum(bool standardize)
    {
        var (train, val) = Fmnist(200);
        const double l2 = 1e-2;
        double Objective(PromptedModel m, bool checkGradient)
        {
            using var scope = NewDisposeScope();
            var f = Evaluation.Features(m, train, Pre32).to(float64);
            var labels = tensor(train.Labels().Select(l => (long)l).ToArray());
            var (mean, std) = standardize ? (f.mean([0]), f.std(0, unbiased: false).clamp_min(1e-6)) : (zeros(f.shape[1], float64), ones(f.shape[1], float64));
            var w = (m.head.weight!.detach().to(float64) * std).requires_grad_(true);          // W' = W·σ
            var b = (m.head.bias!.detach().to(float64) + m.head.weight!.detach().to(float64).matmul(mean)).requires_grad_(true); // b' = b + W·μ
            var loss = nn.functional.cross_entropy(nn.functional.linear((f - mean) / std, w, b), labels) + w.square().sum() * (0.5 * l2);
            loss.backward();
            if (checkGradient)
            {
                double g = Math.Max(w.grad!.abs().max().item<double>(), b.grad!.abs().max().item<double>());
                Assert.True(g < 1e-4, $"|gradient| {g:E2} at the L-BFGS solution");
            }
            return loss.item<double>();
        }
        var opts = new TrainOptions { Epochs = 4, BatchSize = 32, BaseLr = 1.0, WarmupEpochs = 0, WeightDecay = l2, Seed = 4 };
        var lbfgs = opts with { Optimizer = OptimizerKind.Lbfgs, LbfgsStandardize = standardize };
        var solved = PromptedModel.Create(TinyVit(4), new LinearProbeConfig(), 4);
        var r = new Trainer(lbfgs).Fit(solved, train, val, Pre32);
        var sgd = PromptedModel.Create(TinyVit(4), new LinearProbeConfig(), 4);
        new Trainer(opts).Fit(sgd, train, val, Pre32);
        double lbfgsObjective = Objective(solved, checkGradient: true), sgdObjective = Objective(sgd, checkGradient: false);
        Assert.True(lbfgsObjective < sgdObjective, $"L-BFGS objective {lbfgsObjective:F4} vs SGD's {sgdObjective:F4}");
        Assert.True(r.BestValTop1 > 0.5, $"val top-1 {r.BestValTop1:P1} (chance 25%)");
        // Each epoch's loss is the objective at its end (penalty included), so it is the solution's and never rises.
        Assert.Equal(lbfgsObjective, r.History[^1].TrainLoss, 6);
        for (int e = 1; e < r.History.Count; e++)
            Assert.True(r.History[e].TrainLoss <= r.History[e - 1].TrainLoss, $"epoch {e + 1}'s objective {r.History[e].TrainLoss:R} above epoch {e}'s {r.History[e - 1].TrainLoss:R}");

        var prompted = PromptedModel.Create(TinyVit(4), new PromptConfig { Tokens = 2, Deep = true }, 4);
        var ex = Assert.Throws<InvalidSettingException>(() => new Trainer(lbfgs).Fit(prompted, train, val, Pre32));
        Assert.Equal("optimizer", ex.Setting);
        Assert.Contains("method linear", ex.Message);
    }

    [Fact]
    public void WarmupCosineSchedule()
    {
        Assert.Equal(0.1, WarmupCosine.At(0, 100, 10, 1.0), 9);
        Assert.Equal(1.0, WarmupCosine.At(9, 100, 10, 1.0), 9);
        Assert.Equal(1.0, WarmupCosine.At(10, 100, 10, 1.0), 9);
        Assert.Equal(0.5, WarmupCosine.At(55, 100, 10, 1.0), 9);
        Assert.True(WarmupCosine.At(99, 100, 10, 1.0) < 0.001);
        Assert.Equal(0.1 * 64 / 256, new TrainOptions { BaseLr = 0.1, BatchSize = 64 }.PeakLr, 12);
    }

    [Fact]
    public void MemoryStaysFlatAcrossEpochs()
    {
        var ds = new FractalImages(4, 32, seed: 2);
        var model = PromptedModel.Create(TinyVit(3), new PromptConfig { Tokens = 4, Deep = true }, 4);
        var rss = new List<long>();
        var trainer = new Trainer(new TrainOptions { Epochs = 12, BatchSize = 16, BaseLr = 0.5, WarmupEpochs = 1, Seed = 1 });
        trainer.EpochEnd += _ => { GC.Collect(); GC.WaitForPendingFinalizers(); rss.Add(Process.GetCurrentProcess().WorkingSet64); };
        trainer.Fit(model, ds, null, Pre32);
        long growth = rss[^1] - rss[2];
        Assert.True(growth < 40L << 20, $"RSS grew {growth >> 20} MiB from epoch 3 to 12");
    }

    /// <summary>
    /// The step Fit takes and `vpt bench` times: it reports forward, backward and optimizer in order, updates the
    /// trainable tensors, and a non-finite loss stops it before any update, naming where it happened.
    /// </summary>
    [Fact]
    public void TrainStepReportsItsPhasesAndRefusesANonFiniteLoss()
    {
        manual_seed(0);
        using var model = PromptedModel.Create(TinyVit(1), new PromptConfig { Tokens = 2 }, 3);
        var trainer = new Trainer(new TrainOptions { BatchSize = 4 });
        using var opt = trainer.CreateOptimizer(model);
        model.train();
        using var x = randn(4, 3, 32, 32);
        using var y = tensor(new long[] { 0, 1, 2, 0 });
        List<Tensor> Copy() => model.TrainableParameters().Select(p => p.Param.detach().clone()).ToList();
        var before = Copy();
        var phases = new List<StepPhase>();
        var (loss, correct) = trainer.TrainStep(model, opt, x, y, lr: 0.5, phaseDone: phases.Add);
        Assert.Equal([StepPhase.Forward, StepPhase.Backward, StepPhase.Optimizer], phases);
        Assert.True(float.IsFinite(loss) && loss > 0);
        Assert.InRange(correct, 0, 4);
        var after = Copy();
        Assert.Contains(before.Zip(after), p => !Same(p.First, p.Second)); // the step moved the prompts or the head

        using var nan = x * float.NaN;
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.TrainStep(model, opt, nan, y, lr: 0.5, where: "at step 7"));
        Assert.Contains("loss became NaN at step 7", e.Message);
        Assert.All(after.Zip(Copy()), p => Assert.True(Same(p.First, p.Second))); // nothing was updated
    }
}
