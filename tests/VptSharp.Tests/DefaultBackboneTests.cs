using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Inference;
using VptSharp.Training;
using VptSharp.Tuning;

namespace VptSharp.Tests;

/// <summary>The embedded default backbone (docs/default-backbone.md) and transfer to classes it never saw.</summary>
public class DefaultBackboneTests
{
    [Fact]
    public void DefaultLoadsWithItsRecordedArchitectureAndStableHash()
    {
        using var bb = BackboneLoader.Load("default");
        Assert.Equal("default", bb.Source);
        Assert.Equal((32, 4), (bb.Config.ImageSize, bb.Config.PatchSize));
        Assert.Equal(CheckpointReader.Sha256(BackboneLoader.DefaultBackboneBytes()), bb.Sha256);
        Assert.InRange(BackboneLoader.DefaultBackboneBytes().Length, 1_000_000, 12_000_000);
        Assert.All(bb.Model.parameters(), p => Assert.False(p.requires_grad));
    }

    [Fact]
    public void LinearProbeOnUnseenClassesBeatsChanceByFar()
    {
        // Classes 5-9 (sandal, shirt, sneaker, bag, ankle boot) were not in the default backbone's pretraining data.
        using var bb = BackboneLoader.Load("default");
        var (train, val) = DatasetSpec.Open("fashion-mnist:train[30000:31000]@5-9").SplitTrainVal(0.2, 1);
        var pre = new Preprocessing { ImageSize = bb.Config.ImageSize };
        var model = PromptedModel.Create(bb.Model, new LinearProbeConfig(), 5);
        var r = new Trainer(new TrainOptions { Epochs = 60, BatchSize = 64, BaseLr = 1.0, WeightDecay = 0, WarmupEpochs = 2, Seed = 1 })
            .Fit(model, train, val, pre);
        Assert.True(r.BestValTop1 > 0.75, $"val top-1 {r.BestValTop1:P1} (chance 20%)");
    }
}
