namespace VptSharp.Data.Segmentation;

/// <summary>
/// SETR's training augmentation (mmseg's ADE20K pipeline): random resize with ratio in [<see cref="MinRatio"/>,
/// <see cref="MaxRatio"/>] of a base scale keeping the aspect ratio (the image's own size, at least the crop on the shorter side),
/// random crop whose largest class covers at most <see cref="CatMaxRatio"/> of it (10 tries), horizontal flip with
/// probability ½, photometric distortion (brightness ±32, contrast and saturation ×[0.5, 1.5], hue ±18 OpenCV units =
/// ±36°, each with probability ½, contrast before or after the HSV steps), then padding to the crop (image 0, labels 255).
/// Deterministic in the <see cref="Random"/> it is given.
/// </summary>
public sealed class SegmentationAugment(int crop)
{
    public int Crop => crop;
    public double MinRatio { get; init; } = 0.5;
    public double MaxRatio { get; init; } = 2.0;
    public double CatMaxRatio { get; init; } = 0.75;
    public bool Photometric { get; init; } = true;
    /// <summary>Random resize (off: the image keeps its size; a crop and flip remain).</summary>
    public bool RandomResize { get; init; } = true;

    /// <summary>"setr" (everything), "crop-flip" (random crop + flip only) or "none" (random crop only).</summary>
    public static SegmentationAugment Named(string name, int crop) => name switch
    {
        "setr" => new SegmentationAugment(crop),
        "crop-flip" => new SegmentationAugment(crop) { RandomResize = false, Photometric = false },
        "none" => new SegmentationAugment(crop) { RandomResize = false, Photometric = false, Flips = false },
        _ => throw new InvalidSettingException("augment", name, "use setr, crop-flip or none"),
    };
    public bool Flips { get; init; } = true;

    public (RgbImage Image, LabelMask Mask) Apply(RgbImage image, LabelMask mask, Random rng)
    {
        if (image.Width != mask.Width || image.Height != mask.Height)
            throw new ArgumentException($"image {image.Width}×{image.Height} and mask {mask.Width}×{mask.Height} differ");
        // Random resize by r of the base scale, aspect ratio kept. The base is the image's own size, or the size that
        // makes its shorter side the crop when it is smaller (ADE20K's base (2048, 512) for a 512 crop is about its
        // images' own size; a fixed base of the crop would shrink larger images before the ratio applies).
        double r = RandomResize ? MinRatio + (MaxRatio - MinRatio) * rng.NextDouble() : 1;
        double shortSide = Math.Min(image.Width, image.Height);
        double f = r * Math.Max(1, crop / shortSide);
        int w = Math.Max(1, (int)(image.Width * f + 0.5)), h = Math.Max(1, (int)(image.Height * f + 0.5));
        image = ImageTransform.Resize(image, w, h);
        mask = mask.Resize(w, h);
        // Random crop, retried while one class dominates it.
        int cw = Math.Min(crop, w), ch = Math.Min(crop, h), x0 = 0, y0 = 0;
        for (int attempt = 0; attempt < 10; attempt++)
        {
            x0 = rng.Next(w - cw + 1); y0 = rng.Next(h - ch + 1);
            if (CatMaxRatio >= 1 || Balanced(mask, x0, y0, cw, ch)) break;
        }
        bool flip = rng.NextDouble() < 0.5 && Flips;
        var px = new byte[crop * crop * 3];
        var labels = Enumerable.Repeat(LabelMask.Ignore, crop * crop).ToArray();
        for (int y = 0; y < ch; y++)
            for (int x = 0; x < cw; x++)
            {
                int sx = x0 + (flip ? cw - 1 - x : x), sy = y0 + y, s = sy * w + sx, d = y * crop + x;
                labels[d] = mask.Labels[s];
                px[3 * d] = image.Pixels[3 * s]; px[3 * d + 1] = image.Pixels[3 * s + 1]; px[3 * d + 2] = image.Pixels[3 * s + 2];
            }
        if (Photometric) Distort(px, ch, cw, crop, rng);
        return (new RgbImage(crop, crop, px), new LabelMask(crop, crop, labels));
    }

    bool Balanced(LabelMask m, int x0, int y0, int cw, int ch)
    {
        var counts = new int[256];
        for (int y = y0; y < y0 + ch; y++)
            for (int x = x0; x < x0 + cw; x++) counts[m.Labels[y * m.Width + x]]++;
        counts[LabelMask.Ignore] = 0;
        int total = counts.Sum(), present = counts.Count(c => c > 0);
        return present > 1 && counts.Max() < CatMaxRatio * total;
    }

    /// <summary>mmseg's PhotoMetricDistortion on the valid (unpadded) region, values clipped to 0..255 after each step.</summary>
    static void Distort(byte[] px, int h, int w, int stride, Random rng)
    {
        var v = new float[h * w * 3];
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) for (int c = 0; c < 3; c++) v[3 * (y * w + x) + c] = px[3 * (y * stride + x) + c];
        void Clip() { for (int i = 0; i < v.Length; i++) v[i] = Math.Clamp(v[i], 0f, 255f); }
        if (rng.Next(2) == 1) { float delta = (float)(rng.NextDouble() * 64 - 32); for (int i = 0; i < v.Length; i++) v[i] += delta; Clip(); }
        bool contrastFirst = rng.Next(2) == 1;
        void Contrast()
        {
            if (rng.Next(2) == 0) return;
            float a = (float)(0.5 + rng.NextDouble());
            for (int i = 0; i < v.Length; i++) v[i] *= a;
            Clip();
        }
        if (contrastFirst) Contrast();
        bool saturate = rng.Next(2) == 1; double sat = 0.5 + rng.NextDouble();
        bool hue = rng.Next(2) == 1; double shift = rng.NextDouble() * 72 - 36;
        if (saturate || hue)
            for (int i = 0; i < v.Length; i += 3)
            {
                var (hh, s, val) = ToHsv(v[i], v[i + 1], v[i + 2]);
                if (saturate) s = Math.Clamp(s * sat, 0, 1);
                if (hue) hh = ((hh + shift) % 360 + 360) % 360;
                (v[i], v[i + 1], v[i + 2]) = FromHsv(hh, s, val);
            }
        if (!contrastFirst) Contrast();
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) for (int c = 0; c < 3; c++)
            px[3 * (y * stride + x) + c] = (byte)Math.Clamp((int)Math.Round(v[3 * (y * w + x) + c]), 0, 255);
    }

    static (double H, double S, double V) ToHsv(double r, double g, double b)
    {
        double max = Math.Max(r, Math.Max(g, b)), min = Math.Min(r, Math.Min(g, b)), d = max - min;
        double h = d == 0 ? 0 : max == r ? 60 * (((g - b) / d) % 6) : max == g ? 60 * ((b - r) / d + 2) : 60 * ((r - g) / d + 4);
        return (h < 0 ? h + 360 : h, max == 0 ? 0 : d / max, max);
    }

    static (float R, float G, float B) FromHsv(double h, double s, double v)
    {
        double c = v * s, x = c * (1 - Math.Abs(h / 60 % 2 - 1)), m = v - c;
        var (r, g, b) = (int)(h / 60) switch { 0 => (c, x, 0.0), 1 => (x, c, 0.0), 2 => (0.0, c, x), 3 => (0.0, x, c), 4 => (x, 0.0, c), _ => (c, 0.0, x) };
        return ((float)(r + m), (float)(g + m), (float)(b + m));
    }

    /// <summary>RGB bytes → normalised CHW floats (per-channel mean/std of 0..1 pixels).</summary>
    public static float[] Normalize(RgbImage img, Preprocessing pre)
    {
        int plane = img.Width * img.Height;
        var dst = new float[3 * plane];
        for (int c = 0; c < 3; c++)
        {
            float scale = 1f / (255f * pre.Std[c]), shift = pre.Mean[c] / pre.Std[c];
            for (int i = 0; i < plane; i++) dst[c * plane + i] = img.Pixels[3 * i + c] * scale - shift;
        }
        return dst;
    }
}
