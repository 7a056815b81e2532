using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Segmentation;

/// <summary>How a whole image is segmented from fixed-size crops (mmseg's slide mode), and the optional test-time
/// augmentation (scales × horizontal flip, probabilities averaged as mmseg's aug_test).</summary>
public sealed record SlideOptions
{
    /// <summary>Crop side; null = the backbone's input size.</summary>
    public int? Crop { get; init; }
    /// <summary>Stride between crops; null = ⌈2/3 crop⌉ (mmseg's ADE20K setting: crop 512, stride 341).</summary>
    public int? Stride { get; init; }
    /// <summary>Crops per forward pass.</summary>
    public int Batch { get; init; } = 16;
    /// <summary>Image scales of multi-scale inference (mmseg's ADE20K TTA: 0.5 … 1.75); [1] = single scale.</summary>
    public double[] Scales { get; init; } = [1.0];
    public bool Flip { get; init; }

    public static int DefaultStride(int crop) => (crop * 2 + 2) / 3;

    public void Validate(int crop)
    {
        if (Stride is int s && (s < 1 || s > crop)) throw new InvalidSettingException("stride", s, $"must be in 1..{crop} (the crop)");
        if (Batch < 1 || Batch > 4096) throw new InvalidSettingException("batch-size", Batch, "must be in 1..4096");
        if (Scales.Length == 0 || Scales.Length > 16 || Scales.Any(x => !(x >= 0.0625 && x <= 8)))
            throw new InvalidSettingException("scales", string.Join(",", Scales), "give 1..16 scales, each in 0.0625..8");
    }
}

/// <summary>Sliding-window and multi-scale + flip inference over any crop → logits function.</summary>
public static class SlidingWindow
{
    /// <summary>
    /// Logits [B, C, H, W] of images [B, 3, H, W] from crops of side <paramref name="crop"/>: windows start every
    /// <paramref name="stride"/> pixels, the last one flush with the border (mmseg's slide_inference), and overlapping
    /// logits are averaged. An image smaller than the crop is zero-padded at the bottom/right (the mean colour after
    /// normalisation; a ViT takes one size) and its logits cut back.
    /// </summary>
    public static Tensor Slide(Func<Tensor, Tensor> logitsOf, Tensor images, int numClasses, int crop, int stride, int batch = 16)
    {
        using var scope = NewDisposeScope();
        long b = images.shape[0];
        int h = (int)images.shape[2], w = (int)images.shape[3];
        int ph = Math.Max(h, crop), pw = Math.Max(w, crop);
        var x = ph == h && pw == w ? images : functional.pad(images, [0, pw - w, 0, ph - h]);
        var windows = Windows(ph, pw, crop, stride);
        var sum = zeros(b, numClasses, ph, pw, dtype: float32, device: images.device);
        var count = zeros(1, 1, ph, pw, dtype: float32, device: images.device);
        // Crops of all images are batched together (the same order as the windows list).
        var all = windows.SelectMany(win => Enumerable.Range(0, (int)b).Select(i => (win, i))).ToList();
        for (int start = 0; start < all.Count; start += batch)
        {
            using var inner = NewDisposeScope();
            var part = all.Skip(start).Take(batch).ToList();
            var crops = stack(part.Select(p => x[p.i, .., p.win.Y..(p.win.Y + crop), p.win.X..(p.win.X + crop)]).ToArray());
            var logits = logitsOf(crops).to(float32);
            for (int k = 0; k < part.Count; k++)
            {
                var (win, i) = part[k];
                sum[i, .., win.Y..(win.Y + crop), win.X..(win.X + crop)].add_(logits[k]);
            }
        }
        // Explicit, disposed Scalars: an implicit one can be finalized by the GC mid-call (the brief's Scalar hazard).
        using (var one = 1.ToScalar())
            foreach (var win in windows) count[.., .., win.Y..(win.Y + crop), win.X..(win.X + crop)].add_(one);
        var result = sum / count;
        if (ph != h || pw != w) result = result[.., .., ..h, ..w];
        return result.contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Top-left corners of the windows over an image of (at least crop-sized) side lengths.</summary>
    public static List<(int Y, int X)> Windows(int h, int w, int crop, int stride)
    {
        if (crop < 1 || stride < 1) throw new ArgumentException("crop and stride must be positive");
        int rows = Math.Max(h - crop + stride - 1, 0) / stride + 1, cols = Math.Max(w - crop + stride - 1, 0) / stride + 1;
        var list = new List<(int, int)>();
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
            {
                int y2 = Math.Min(r * stride + crop, h), x2 = Math.Min(c * stride + crop, w);
                list.Add((Math.Max(y2 - crop, 0), Math.Max(x2 - crop, 0)));
            }
        return list;
    }

    /// <summary>
    /// Class probabilities [B, C, H, W]: for each scale the images are resized (bilinear), segmented by
    /// <see cref="Slide"/> (and, with flip, also mirrored and mirrored back), the logits resized to H×W and
    /// softmaxed; the probabilities are averaged over every pass.
    /// </summary>
    public static Tensor Probabilities(Func<Tensor, Tensor> logitsOf, Tensor images, int numClasses, int crop, SlideOptions o)
    {
        using var scope = NewDisposeScope();
        int h = (int)images.shape[2], w = (int)images.shape[3];
        int stride = o.Stride ?? SlideOptions.DefaultStride(crop);
        Tensor? total = null;
        int passes = 0;
        foreach (double s in o.Scales)
        {
            int sh = Math.Max(1, (int)Math.Round(h * s)), sw = Math.Max(1, (int)Math.Round(w * s));
            var scaled = sh == h && sw == w ? images
                : functional.interpolate(images, size: [sh, sw], mode: InterpolationMode.Bilinear, align_corners: false);
            foreach (bool flip in o.Flip ? new[] { false, true } : [false])
            {
                var input = flip ? scaled.flip(3) : scaled;
                var logits = Slide(logitsOf, input, numClasses, crop, stride, o.Batch);
                if (flip) logits = logits.flip(3);
                if (sh != h || sw != w)
                    logits = functional.interpolate(logits, size: [h, w], mode: InterpolationMode.Bilinear, align_corners: false);
                var p = functional.softmax(logits, 1);
                total = total is null ? p : total + p;
                passes++;
            }
        }
        using var n = ((double)passes).ToScalar();
        return total!.div(n).MoveToOuterDisposeScope();
    }
}
