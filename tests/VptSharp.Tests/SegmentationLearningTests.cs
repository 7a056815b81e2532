using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Data.MiniSuite;
using VptSharp.Data.Segmentation;
using VptSharp.Segmentation;
using VptSharp.Training;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>Whether segmentation training can learn at all (issue 15's weak evidence): every trainable set of Table 3,
/// with the trainer's default optimizer and learning rate, fits one fixed batch of seg-shapes crops.</summary>
public class SegmentationLearningTests
{
    /// <summary>8 seg-shapes images cut to the 32-px crop (so the trainer's random crop is the identity), unflipped.</summary>
    static SegmentationDataset OneBatch(string dir)
    {
        var task = new SegShapesTask(seed: 3);
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        Directory.CreateDirectory(Path.Combine(dir, "masks"));
        File.WriteAllLines(Path.Combine(dir, "classes.txt"), SegShapesTask.Classes);
        for (int i = 0; i < 8; i++)
        {
            var (img, mask) = task.Generate(MiniSplit.Train, i);
            var px = new byte[32 * 32 * 3];
            var labels = new byte[32 * 32];
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                {
                    int s = (y + 8) * SegShapesTask.Size + x + 8, d = y * 32 + x;
                    labels[d] = mask.Labels[s];
                    for (int c = 0; c < 3; c++) px[3 * d + c] = img.Pixels[3 * s + c];
                }
            File.WriteAllBytes(Path.Combine(dir, "images", $"{i}.png"), MiniSuiteWriter.EncodePng(new RgbImage(32, 32, px)));
            LabelMaskCodec.Save(Path.Combine(dir, "masks", $"{i}.png"), new LabelMask(32, 32, labels));
        }
        return SegmentationDataset.Open(dir);
    }

    [Theory]
    [InlineData("head-only")]
    [InlineData("bias")]
    [InlineData("vpt-deep")]
    [InlineData("full")]
    public void EveryTrainableSetFitsOneBatchWithItsDefaultRecipe(string method)
    {
        string dir = TempDir();
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 2));
        var data = OneBatch(Path.Combine(dir, "batch"));
        manual_seed(0);
        using var model = SegmentationModel.Create(bb.Model, SegmentationMethods.FromName(method, new MethodOptions { Prompts = 4 }), 5,
            new PupConfig { Channels = 16 });
        var opts = new SegmentationTrainOptions { Epochs = 80, BatchSize = 8, Augment = "none" };
        var losses = new SegmentationTrainer(opts).Fit(model, data, null, new Preprocessing { ImageSize = 32 }).Epochs.Select(e => e.TrainLoss).ToList();
        // Predicting the batch's class frequencies everywhere scores its label entropy; a model that learned where the
        // shapes are goes well below it (a broken pipeline — labels misaligned with pixels, nothing trained — cannot).
        var labels = Enumerable.Range(0, data.Count).SelectMany(i => data.Load(i).Mask.Labels).ToArray();
        double entropy = -labels.GroupBy(l => l).Select(g => (double)g.Count() / labels.Length).Sum(p => p * Math.Log(p));
        Assert.True(losses[^1] < 0.6 * entropy, $"{method}: loss {losses[0]:F3} → {losses[^1]:F3} after 80 steps; label entropy {entropy:F3}");
    }
}
