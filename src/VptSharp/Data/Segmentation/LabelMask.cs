using System.Runtime.InteropServices;
using SkiaSharp;
using VptSharp.IO;

namespace VptSharp.Data.Segmentation;

/// <summary>Per-pixel class labels, row-major; 255 = ignore (mmseg's convention, so at most 255 classes).</summary>
public sealed record LabelMask(int Width, int Height, byte[] Labels)
{
    public const byte Ignore = 255;

    /// <summary>Nearest-neighbour resize (labels are never interpolated), sampling each output pixel's centre.</summary>
    public LabelMask Resize(int w, int h)
    {
        if (w == Width && h == Height) return this;
        var dst = new byte[w * h];
        for (int y = 0; y < h; y++)
        {
            int sy = Math.Min(Height - 1, (int)((y + 0.5) * Height / h));
            for (int x = 0; x < w; x++)
                dst[y * w + x] = Labels[sy * Width + Math.Min(Width - 1, (int)((x + 0.5) * Width / w))];
        }
        return new LabelMask(w, h, dst);
    }
}

/// <summary>
/// Label PNGs: read as single-channel values (8-bit grayscale, or RGB with R = G = B), written as 8-bit grayscale. A
/// colour-palette mask cannot be read as labels (the palette index is lost in decoding) and is refused in one line.
/// </summary>
public static class LabelMaskCodec
{
    public static LabelMask DecodeFile(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new BadImageException(path, "mask file not found");
        if (info.Length == 0) throw new BadImageException(path, "empty or not a regular file");
        if (info.Length > ImageDecoder.MaxFileBytes) throw new BadImageException(path, $"{info.Length:N0} bytes, over the {ImageDecoder.MaxFileBytes:N0}-byte limit");
        return Decode(File.ReadAllBytes(path), path);
    }

    public static LabelMask Decode(byte[] data, string name)
    {
        if (data.Length == 0) throw new BadImageException(name, "empty file, not a mask");
        SKCodec? codec;
        try { codec = SKCodec.Create(new SKMemoryStream(data), out _); }
        catch (ArgumentException) { codec = null; }
        if (codec is null) throw new BadImageException(name, "not a decodable mask image (use 8-bit grayscale PNG label maps)");
        using (codec)
        {
            int w = codec.Info.Width, h = codec.Info.Height;
            if (w <= 0 || h <= 0) throw new BadImageException(name, "mask header declares no pixels");
            if (ImageDecoder.TooLarge(w, h)) throw new BadImageException(name, $"mask of {w}×{h} pixels is over the {ImageDecoder.MaxPixels:N0}-pixel limit");
            bool gray = codec.Info.ColorType == SKColorType.Gray8;
            var info = new SKImageInfo(w, h, gray ? SKColorType.Gray8 : SKColorType.Rgba8888, SKAlphaType.Unpremul);
            var buf = new byte[(long)w * h * (gray ? 1 : 4)];
            var handle = GCHandle.Alloc(buf, GCHandleType.Pinned);
            SKCodecResult result;
            try { result = codec.GetPixels(info, handle.AddrOfPinnedObject()); }
            finally { handle.Free(); }
            if (result != SKCodecResult.Success)
                throw new BadImageException(name, result == SKCodecResult.IncompleteInput ? "mask data ends early; the file is truncated or corrupt" : $"not a decodable mask ({result})");
            if (gray) return new LabelMask(w, h, buf);
            var labels = new byte[w * h];
            for (int i = 0; i < labels.Length; i++)
            {
                byte r = buf[4 * i], g = buf[4 * i + 1], b = buf[4 * i + 2];
                if (r != g || g != b)
                    throw new BadImageException(name, $"a colour mask (pixel {i % w},{i / w} is RGB {r},{g},{b}); masks are single-channel label maps (8-bit grayscale PNG, value = class)");
                labels[i] = r;
            }
            return new LabelMask(w, h, labels);
        }
    }

    /// <summary>8-bit grayscale PNG of the labels (value = class, 255 = ignore).</summary>
    public static byte[] EncodePng(LabelMask mask)
    {
        using var bmp = new SKBitmap(new SKImageInfo(mask.Width, mask.Height, SKColorType.Gray8, SKAlphaType.Opaque));
        mask.Labels.CopyTo(bmp.GetPixelSpan());
        using var data = bmp.Encode(SKEncodedImageFormat.Png, 100) ?? throw new InvalidOperationException("SkiaSharp could not encode a PNG");
        return data.ToArray();
    }

    public static void Save(string path, LabelMask mask) => AtomicFile.Write(path, s => s.Write(EncodePng(mask)));

    /// <summary>A fixed, well-separated colour per class (class 0 black, ignore white), for coloured masks and overlays.</summary>
    public static (byte R, byte G, byte B) ColorOf(int label)
    {
        if (label == LabelMask.Ignore) return (255, 255, 255);
        if (label == 0) return (0, 0, 0);
        // Bit-interleaved palette (as PASCAL VOC's): distinct colours for small indices.
        int r = 0, g = 0, b = 0, c = label;
        for (int i = 7; i >= 0 && c > 0; i--, c >>= 3)
        {
            r |= (c & 1) << i; g |= ((c >> 1) & 1) << i; b |= ((c >> 2) & 1) << i;
        }
        return ((byte)r, (byte)g, (byte)b);
    }

    /// <summary>The mask in colour (<see cref="ColorOf"/>).</summary>
    public static RgbImage Colorize(LabelMask mask)
    {
        var px = new byte[mask.Labels.Length * 3];
        for (int i = 0; i < mask.Labels.Length; i++)
        {
            var (r, g, b) = ColorOf(mask.Labels[i]);
            px[3 * i] = r; px[3 * i + 1] = g; px[3 * i + 2] = b;
        }
        return new RgbImage(mask.Width, mask.Height, px);
    }

    /// <summary>The image with the coloured mask blended over it (<paramref name="alpha"/> of the mask).</summary>
    public static RgbImage Overlay(RgbImage image, LabelMask mask, double alpha = 0.5)
    {
        if (image.Width != mask.Width || image.Height != mask.Height)
            throw new ArgumentException($"mask {mask.Width}×{mask.Height} does not match image {image.Width}×{image.Height}");
        var color = Colorize(mask).Pixels;
        var px = new byte[color.Length];
        for (int i = 0; i < px.Length; i++) px[i] = (byte)Math.Round((1 - alpha) * image.Pixels[i] + alpha * color[i]);
        return new RgbImage(image.Width, image.Height, px);
    }
}
