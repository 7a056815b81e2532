using System.Runtime.InteropServices;
using SkiaSharp;

namespace VptSharp.Data;

/// <summary>
/// Decodes untrusted image bytes with bounded memory and time. The size comes from the header (SKCodec.Info) before
/// any pixel is decoded, and more than <see cref="MaxPixels"/> is refused. Large images are decoded a few rows at a
/// time and box-averaged down by an integer factor per axis until each side is below 2 × <see cref="ReducedSide"/>,
/// so memory is a strip of source rows plus the reduced image — the model needs at most a few hundred pixels a side.
/// Data that ends early (a truncated PNG or JPEG) is refused, never padded and used.
/// </summary>
public static class ImageDecoder
{
    /// <summary>Largest image accepted: 40 megapixels (e.g. 8000 × 5000).</summary>
    public const long MaxPixels = 40_000_000;
    /// <summary>Largest image file read: 256 MiB.</summary>
    public const long MaxFileBytes = 256L << 20;
    /// <summary>Sides of 2 × this or more are reduced by the integer factor side / this (so a 4000-pixel side becomes 1000).</summary>
    public const int ReducedSide = 1024;

    /// <summary>Width and height from the header alone; throws <see cref="BadImageException"/> for non-images.</summary>
    public static (int Width, int Height) ReadSize(byte[] data, string name)
    {
        using var codec = Open(data, name, enforceCap: false);
        return (codec.Info.Width, codec.Info.Height);
    }

    /// <summary>Whether a header's size is over <see cref="MaxPixels"/> (what a server answers 413 for).</summary>
    public static bool TooLarge(int width, int height) => (long)width * height > MaxPixels;

    static SKCodec Open(byte[] data, string name, bool enforceCap = true)
    {
        if (data.Length == 0) throw new BadImageException(name, "empty file, not an image");
        SKCodec? codec;
        try { codec = SKCodec.Create(new SKMemoryStream(data), out _); } // the codec owns the stream
        catch (ArgumentException) { codec = null; }
        if (codec is null) throw new BadImageException(name, "not a decodable image (corrupt or unsupported format)");
        var info = codec.Info;
        if (info.Width <= 0 || info.Height <= 0) { codec.Dispose(); throw new BadImageException(name, "image header declares no pixels"); }
        if (enforceCap && TooLarge(info.Width, info.Height))
        {
            codec.Dispose();
            throw new BadImageException(name, $"image header declares {info.Width}×{info.Height} pixels, over the {MaxPixels:N0}-pixel limit; downscale the image");
        }
        return codec;
    }

    /// <summary>Reads a file (regular, non-empty, at most <see cref="MaxFileBytes"/>) and decodes it.</summary>
    public static RgbImage DecodeFile(string path) => Decode(ReadImageFile(path), path);

    /// <summary>The bytes of an image file, refused (named) unless it is a regular, non-empty file of at most
    /// <see cref="MaxFileBytes"/>.</summary>
    public static byte[] ReadImageFile(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new BadImageException(path, "image file not found");
        // FIFOs, devices and sockets report length 0: refused without opening (opening a FIFO would block).
        if (info.Length == 0) throw new BadImageException(path, "empty or not a regular file");
        if (info.Length > MaxFileBytes) throw new BadImageException(path, $"{info.Length:N0} bytes, over the {MaxFileBytes:N0}-byte image file limit");
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new BadImageException(path, $"cannot read ({e.Message})"); }
    }

    /// <summary>Why a file is not a usable image (null: it is): existence, header and size limits, and with
    /// <paramref name="fullDecode"/> the whole pixel data (truncation shows only there).</summary>
    public static string? Check(string path, bool fullDecode)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists) return "image file not found";
            if (info.Length == 0) return "empty or not a regular file";
            if (info.Length > MaxFileBytes) return $"{info.Length:N0} bytes, over the {MaxFileBytes:N0}-byte image file limit";
            if (fullDecode) { DecodeFile(path); return null; }
            // Header only: at most the first 64 KiB are read.
            using var s = File.OpenRead(path);
            var head = new byte[Math.Min(info.Length, 64 << 10)];
            s.ReadExactly(head);
            try { using var codec = Open(head, path); }
            catch (BadImageException) when (head.Length < info.Length) { using var codec = Open(File.ReadAllBytes(path), path); } // a header past 64 KiB (large EXIF/ICC)
            return null;
        }
        catch (BadImageException e) { return e.Reason; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return $"cannot read ({e.Message})"; }
    }

    /// <summary>Decodes to RGB: alpha composited on black (premultiplied), grayscale to 3 channels, no colour management.</summary>
    public static RgbImage Decode(byte[] data, string name)
    {
        using var codec = Open(data, name);
        int w = codec.Info.Width, h = codec.Info.Height;
        int kx = w >= 2 * ReducedSide ? w / ReducedSide : 1, ky = h >= 2 * ReducedSide ? h / ReducedSide : 1;
        int ow = w / kx, oh = h / ky;
        var alpha = codec.Info.AlphaType == SKAlphaType.Opaque ? SKAlphaType.Opaque : SKAlphaType.Premul;
        var info = new SKImageInfo(w, h, SKColorType.Rgba8888, alpha);
        var reducer = new BoxReducer(w, kx, ky, ow, oh);
        if (codec.StartScanlineDecode(info) == SKCodecResult.Success)
        {
            int strip = (int)Math.Clamp((4L << 20) / (4L * w), 1, 64); // rows per call: a ~4 MiB strip
            var buf = new byte[(long)strip * w * 4];
            var handle = GCHandle.Alloc(buf, GCHandleType.Pinned);
            try
            {
                bool bottomUp = codec.ScanlineOrder == SKCodecScanlineOrder.BottomUp;
                for (int y = 0; y < h; y += strip)
                {
                    int n = Math.Min(strip, h - y);
                    int got = codec.GetScanlines(handle.AddrOfPinnedObject(), n, w * 4);
                    if (got != n) throw new BadImageException(name, $"image data ends early (row {y + got} of {h}); the file is truncated or corrupt");
                    for (int r = 0; r < n; r++)
                        reducer.AddRow(bottomUp ? h - 1 - (y + r) : y + r, buf.AsSpan(r * w * 4, w * 4));
                }
            }
            finally { handle.Free(); }
        }
        else
        {
            // Formats without row-by-row decoding (GIF, WebP, …): one full decode, bounded by MaxPixels.
            var buf = new byte[(long)w * h * 4];
            var handle = GCHandle.Alloc(buf, GCHandleType.Pinned);
            SKCodecResult result;
            try { result = codec.GetPixels(info, handle.AddrOfPinnedObject()); }
            finally { handle.Free(); }
            if (result != SKCodecResult.Success)
                throw new BadImageException(name, result == SKCodecResult.IncompleteInput
                    ? "image data ends early; the file is truncated or corrupt" : $"not a decodable image ({result})");
            for (int y = 0; y < h; y++) reducer.AddRow(y, buf.AsSpan(y * w * 4, w * 4));
        }
        return new RgbImage(ow, oh, reducer.Pixels);
    }

    /// <summary>Averages kx × ky blocks of RGBA rows into RGB (rows and columns past the last whole block are dropped).
    /// Rows of one block arrive together (top-down or bottom-up), so one row of sums suffices.</summary>
    sealed class BoxReducer(int w, int kx, int ky, int ow, int oh)
    {
        public readonly byte[] Pixels = new byte[(long)ow * oh * 3];
        readonly uint[]? sums = kx * ky == 1 ? null : new uint[ow * 3];
        int rowsIn;

        public void AddRow(int y, ReadOnlySpan<byte> rgba)
        {
            int oy = y / ky;
            if (oy >= oh) return;
            if (sums is null)
            {
                int d = oy * ow * 3;
                for (int x = 0; x < w; x++) { Pixels[d++] = rgba[4 * x]; Pixels[d++] = rgba[4 * x + 1]; Pixels[d++] = rgba[4 * x + 2]; }
                return;
            }
            for (int x = 0; x < ow * kx; x++)
            {
                int o = (x / kx) * 3;
                sums[o] += rgba[4 * x]; sums[o + 1] += rgba[4 * x + 1]; sums[o + 2] += rgba[4 * x + 2];
            }
            if (++rowsIn < ky) return;
            uint n = (uint)(kx * ky), half = n / 2;
            int baseIdx = oy * ow * 3;
            for (int i = 0; i < ow * 3; i++) { Pixels[baseIdx + i] = (byte)((sums[i] + half) / n); sums[i] = 0; }
            rowsIn = 0;
        }
    }
}
