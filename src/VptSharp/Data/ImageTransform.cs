using SkiaSharp;

namespace VptSharp.Data;

/// <summary>
/// Resize (+ random crop and flip for training under <see cref="ResizeMode.CropFlip"/>), then per-channel
/// normalisation into CHW float32. Resampling is bilinear through SkiaSharp.
/// </summary>
public sealed class ImageTransform(Preprocessing pre, bool train)
{
    public Preprocessing Preprocessing => pre;
    public bool Train => train;
    public int OutputLength => 3 * pre.ImageSize * pre.ImageSize;

    public void Apply(RgbImage img, Random rng, Span<float> dst)
    {
        int s = pre.ImageSize;
        RgbImage sized;
        int ox = 0, oy = 0;
        bool flip = false;
        if (pre.Resize == ResizeMode.Plain)
            sized = Resize(img, s, s);
        else
        {
            // The reference (src/data/transforms.py): shorter side to 256 (for 224) keeping the aspect ratio, then a
            // random (train) or centre crop.
            img = CentreWindow(img, MaxAspect);
            var (rw, rh) = ShorterSideTo(img.Width, img.Height, ResizeBeforeCrop(s));
            sized = Resize(img, rw, rh);
            if (Train) { ox = rng.Next(rw - s + 1); oy = rng.Next(rh - s + 1); flip = rng.Next(2) == 1; }
            else { ox = (int)Math.Round((rw - s) / 2.0, MidpointRounding.ToEven); oy = (int)Math.Round((rh - s) / 2.0, MidpointRounding.ToEven); }
        }
        var px = sized.Pixels;
        int w = sized.Width, plane = s * s;
        for (int c = 0; c < 3; c++)
        {
            float scale = 1f / (255f * pre.Std[c]), shift = pre.Mean[c] / pre.Std[c];
            for (int y = 0; y < s; y++)
                for (int x = 0; x < s; x++)
                {
                    int sx = ox + (flip ? s - 1 - x : x);
                    dst[c * plane + y * s + x] = px[3 * ((oy + y) * w + sx) + c] * scale - shift;
                }
        }
    }

    /// <summary>src/data/transforms.py of the reference: the shorter side is resized to this before the crop (224 → 256,
    /// 384 → 438, 448 → 512; other sizes keep the 256/224 ratio).</summary>
    public static int ResizeBeforeCrop(int crop) => crop switch
    {
        224 => 256, 384 => 438, 448 => 512,
        _ => (int)Math.Round(crop * 256.0 / 224.0),
    };

    /// <summary>Longest side over shortest kept before a shorter-side resize. A 2047×1 image would otherwise be resized to
    /// 524,032×256 (half a gigabyte) to cut one square from it; real photographs stay far below this.</summary>
    public const int MaxAspect = 4;

    /// <summary>The centred part of <paramref name="img"/> whose long side is at most <paramref name="maxAspect"/> times its
    /// short side (the image itself when it already is). It holds the centre crop's region (a longer image's resampling
    /// grid moves by under a pixel); random training crops of a longer image are drawn from it only.</summary>
    public static RgbImage CentreWindow(RgbImage img, int maxAspect)
    {
        int w = img.Width, h = img.Height;
        int cw = (int)Math.Min(w, (long)maxAspect * h), ch = (int)Math.Min(h, (long)maxAspect * w);
        if (cw == w && ch == h) return img;
        int x0 = (w - cw) / 2, y0 = (h - ch) / 2;
        var px = new byte[3 * cw * ch];
        for (int y = 0; y < ch; y++) Array.Copy(img.Pixels, 3 * ((y0 + y) * w + x0), px, 3 * y * cw, 3 * cw);
        return new RgbImage(cw, ch, px);
    }

    /// <summary>torchvision Resize(int): the shorter side becomes <paramref name="size"/>, the longer one
    /// ⌊size · long / short⌋.</summary>
    public static (int Width, int Height) ShorterSideTo(int width, int height, int size) =>
        width <= height ? (size, (int)((long)size * height / width)) : ((int)((long)size * width / height), size);

    public static RgbImage Resize(RgbImage img, int w, int h)
    {
        if (img.Width == w && img.Height == h) return img;
        var info = new SKImageInfo(img.Width, img.Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        using var src = new SKBitmap(info);
        var span = src.GetPixelSpan();
        for (int i = 0; i < img.Width * img.Height; i++)
        {
            span[4 * i] = img.Pixels[3 * i]; span[4 * i + 1] = img.Pixels[3 * i + 1]; span[4 * i + 2] = img.Pixels[3 * i + 2]; span[4 * i + 3] = 255;
        }
        using var dst = src.Resize(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque),
            new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear))
            ?? throw new InvalidOperationException("SkiaSharp resize failed");
        var d = dst.GetPixelSpan();
        var px = new byte[w * h * 3];
        for (int i = 0; i < w * h; i++) { px[3 * i] = d[4 * i]; px[3 * i + 1] = d[4 * i + 1]; px[3 * i + 2] = d[4 * i + 2]; }
        return new RgbImage(w, h, px);
    }
}
