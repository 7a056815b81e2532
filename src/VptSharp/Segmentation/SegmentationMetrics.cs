namespace VptSharp.Segmentation;

/// <summary>Per-pixel label conventions (mmseg's): 255 = ignore, so at most 255 classes.</summary>
public static class SegmentationLabels
{
    public const int Ignore = 255;
    public const int MaxClasses = 255;
}

/// <summary>mIoU, per-class IoU and accuracy, pixel accuracy of one evaluation (mmseg's IoUMetric names in brackets).</summary>
public sealed record SegmentationScores(
    double MeanIoU, double PixelAccuracy, double MeanAccuracy, double[] ClassIoU, double[] ClassAccuracy, long Pixels)
{
    public Dictionary<string, double> ToMetrics() => new()
    {
        ["miou"] = MeanIoU, ["pixel_accuracy"] = PixelAccuracy, ["mean_accuracy"] = MeanAccuracy, ["pixels"] = Pixels,
    };
}

/// <summary>
/// The confusion matrix of a segmentation evaluation (rows = ground truth, columns = prediction), accumulated over
/// images, pixels labelled <see cref="IgnoreIndex"/> skipped. IoU_c = TP / (TP + FP + FN); a class absent from both the
/// labels and the predictions has no IoU (NaN) and is left out of the mean, as mmseg's nanmean; pixel accuracy = ΣTP / Σ
/// labelled pixels (mmseg's aAcc).
/// </summary>
public sealed class ConfusionMatrix
{
    readonly long[] counts;
    public int NumClasses { get; }
    public int IgnoreIndex { get; }

    public ConfusionMatrix(int numClasses, int ignoreIndex = SegmentationLabels.Ignore)
    {
        if (numClasses < 1 || numClasses > SegmentationLabels.MaxClasses)
            throw new ArgumentException($"{numClasses} classes: must be in 1..{SegmentationLabels.MaxClasses}");
        if (ignoreIndex >= 0 && ignoreIndex < numClasses)
            throw new ArgumentException($"ignore index {ignoreIndex} is a class index (classes 0..{numClasses - 1})");
        NumClasses = numClasses;
        IgnoreIndex = ignoreIndex;
        counts = new long[numClasses * numClasses];
    }

    public long this[int truth, int predicted] => counts[truth * NumClasses + predicted];

    /// <summary>Adds one image's labels and predictions (same length). A label that is neither a class nor the ignore index,
    /// or a prediction outside the classes, is refused: <paramref name="source"/> names the image.</summary>
    public void Add(ReadOnlySpan<byte> truth, ReadOnlySpan<byte> predicted, string source = "labels")
    {
        if (truth.Length != predicted.Length)
            throw new ArgumentException($"{source}: {truth.Length} labelled pixels but {predicted.Length} predicted");
        int c = NumClasses;
        for (int i = 0; i < truth.Length; i++)
        {
            int t = truth[i];
            if (t == IgnoreIndex) continue;
            int p = predicted[i];
            if (t >= c) throw new InvalidDataException($"{source}: label {t} at pixel {i} is not a class (0..{c - 1}) nor the ignore label {IgnoreIndex}");
            if (p >= c) throw new ArgumentException($"{source}: prediction {p} at pixel {i} is not a class (0..{c - 1})");
            counts[t * c + p]++;
        }
    }

    /// <summary>Adds a matrix of the same shape (e.g. from another worker).</summary>
    public void Add(ConfusionMatrix other)
    {
        if (other.NumClasses != NumClasses) throw new ArgumentException("confusion matrices of different class counts");
        for (int i = 0; i < counts.Length; i++) counts[i] += other.counts[i];
    }

    public SegmentationScores Scores()
    {
        int c = NumClasses;
        var iou = new double[c];
        var acc = new double[c];
        long tpAll = 0, total = 0;
        for (int k = 0; k < c; k++)
        {
            long tp = this[k, k], row = 0, col = 0;
            for (int j = 0; j < c; j++) { row += this[k, j]; col += this[j, k]; }
            long union = row + col - tp;
            iou[k] = union == 0 ? double.NaN : (double)tp / union;
            acc[k] = row == 0 ? double.NaN : (double)tp / row;
            tpAll += tp;
            total += row;
        }
        return new SegmentationScores(NanMean(iou), total == 0 ? double.NaN : (double)tpAll / total, NanMean(acc), iou, acc, total);
    }

    static double NanMean(double[] v)
    {
        var present = v.Where(x => !double.IsNaN(x)).ToArray();
        return present.Length == 0 ? double.NaN : present.Average();
    }
}
