using TorchSharp;
using VptSharp.Data;
using VptSharp.Data.Segmentation;
using static TorchSharp.torch;

namespace VptSharp.Segmentation;

/// <summary>Whole images → label masks through the sliding window, and evaluation of a model over a dataset.</summary>
public static class SegmentationInference
{
    /// <summary>Normalised [1, 3, H, W] of an RGB image.</summary>
    public static Tensor ToTensor(RgbImage img, Preprocessing pre) =>
        tensor(SegmentationAugment.Normalize(img, pre), [1, 3, img.Height, img.Width]);

    /// <summary>Class probabilities [C, H, W] of one image at its own size (sliding window, optional scales and flip).</summary>
    public static Tensor Probabilities(SegmentationModel model, RgbImage img, Preprocessing pre, SlideOptions o)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = ToTensor(img, pre).to(model.backbone.Device);
        o.Validate(model.CropSize);
        return SlidingWindow.Probabilities(model.forward, x, model.NumClasses, model.CropSize, o)[0].cpu().MoveToOuterDisposeScope();
    }

    /// <summary>The arg-max label of every pixel.</summary>
    public static LabelMask Predict(SegmentationModel model, RgbImage img, Preprocessing pre, SlideOptions o)
    {
        using var p = Probabilities(model, img, pre, o);
        using var am = p.argmax(0).to(ScalarType.Byte);
        return new LabelMask(img.Width, img.Height, am.data<byte>().ToArray());
    }

    /// <summary>Confusion matrix of the model over a dataset (images at their own size). <paramref name="onImage"/> sees
    /// each image's index, decoded image, labels and prediction (for example pictures).</summary>
    public static ConfusionMatrix Evaluate(SegmentationModel model, SegmentationDataset data, Preprocessing pre, SlideOptions o,
        int? limit = null, Action<int, RgbImage, LabelMask, LabelMask>? onImage = null)
    {
        if (data.Classes.Count != model.NumClasses)
            throw new ConfigMismatchException($"{data.Source}: {data.Classes.Count} classes but the model segments {model.NumClasses}", "data");
        bool was = model.training;
        model.eval();
        var cm = new ConfusionMatrix(model.NumClasses);
        try
        {
            int n = Math.Min(limit ?? data.Count, data.Count);
            for (int i = 0; i < n; i++)
            {
                var (img, labels) = data.Load(i);
                var pred = Predict(model, img, pre, o);
                cm.Add(labels.Labels, pred.Labels, data.Samples[i].MaskPath);
                onImage?.Invoke(i, img, labels, pred);
            }
        }
        finally { model.train(was); }
        return cm;
    }
}
