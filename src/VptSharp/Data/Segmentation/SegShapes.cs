using SkiaSharp;
using VptSharp.Data.MiniSuite;
using VptSharp.IO;

namespace VptSharp.Data.Segmentation;

/// <summary>
/// The offline segmentation task (<c>vpt data make seg-shapes</c>): 48×48 images of 2–4 overlapping objects on a
/// textured background, labelled per pixel with 5 classes — background, disk, square, triangle (solid random colours,
/// any rotation: told apart by shape) and stripes (an ellipse filled with two-colour stripes: told apart by texture).
/// Colours carry no class information. Deterministic in (seed, split, index); 48 px is larger than the default
/// backbone's 32-px input, so evaluation exercises the sliding window.
/// </summary>
public sealed class SegShapesTask(int seed = 0)
{
    public const string Name = "seg-shapes";
    public const int Size = 48;
    public static readonly IReadOnlyList<string> Classes = ["background", "disk", "square", "triangle", "stripes"];
    public static readonly MiniSplitSizes DefaultSizes = new(Train: 400, Val: 100, Test: 200);

    public (RgbImage Image, LabelMask Mask) Generate(MiniSplit split, int index)
    {
        var rng = new Random(StableSeed.Of(seed, 15, (int)split, index));
        var info = new SKImageInfo(Size, Size, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var img = new SKBitmap(info);
        using var lab = new SKBitmap(info);
        using (var canvas = new SKCanvas(img))
        using (var labels = new SKCanvas(lab))
        {
            labels.Clear(new SKColor(0, 0, 0));
            DrawBackground(canvas, rng);
            int objects = 2 + rng.Next(3);
            for (int k = 0; k < objects; k++)
            {
                int cls = 1 + rng.Next(4);
                float cx = (float)(6 + rng.NextDouble() * (Size - 12)), cy = (float)(6 + rng.NextDouble() * (Size - 12));
                float r = (float)(6 + rng.NextDouble() * 7), angle = (float)(rng.NextDouble() * 360);
                using var path = ShapePath(cls, cx, cy, r, angle, rng);
                using (var paint = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Fill })
                {
                    if (cls == 4)
                    {
                        var a = Color(rng); var b = Color(rng);
                        double th = rng.NextDouble() * Math.PI; float period = 3 + rng.Next(3);
                        var end = new SKPoint(cx + (float)(2 * period * Math.Cos(th)), cy + (float)(2 * period * Math.Sin(th)));
                        paint.Shader = SKShader.CreateLinearGradient(new SKPoint(cx, cy), end, [a, a, b, b], [0f, 0.5f, 0.5f, 1f], SKShaderTileMode.Repeat);
                    }
                    else paint.Color = Color(rng);
                    canvas.DrawPath(path, paint);
                }
                // Labels without anti-aliasing: every pixel whose centre is inside the shape.
                using var lp = new SKPaint { IsAntialias = false, Style = SKPaintStyle.Fill, Color = new SKColor((byte)cls, (byte)cls, (byte)cls) };
                labels.DrawPath(path, lp);
            }
        }
        var src = img.GetPixelSpan();
        var l = lab.GetPixelSpan();
        var px = new byte[Size * Size * 3];
        var mask = new byte[Size * Size];
        for (int i = 0; i < Size * Size; i++)
        {
            px[3 * i] = src[4 * i]; px[3 * i + 1] = src[4 * i + 1]; px[3 * i + 2] = src[4 * i + 2];
            mask[i] = l[4 * i];
        }
        return (new RgbImage(Size, Size, px), new LabelMask(Size, Size, mask));
    }

    static SKColor Color(Random rng) => new((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256));

    /// <summary>A base colour with per-pixel noise, or a fine checkerboard of two close colours.</summary>
    static void DrawBackground(SKCanvas canvas, Random rng)
    {
        var baseColor = Color(rng);
        canvas.Clear(baseColor);
        bool checker = rng.Next(2) == 0;
        int cell = 2 + rng.Next(3);
        using var paint = new SKPaint { IsAntialias = false };
        for (int y = 0; y < Size; y++)
            for (int x = 0; x < Size; x++)
            {
                int d = checker ? ((x / cell + y / cell) % 2 == 0 ? 18 : -18) : rng.Next(-20, 21);
                paint.Color = new SKColor(Clamp(baseColor.Red + d), Clamp(baseColor.Green + d), Clamp(baseColor.Blue + d));
                canvas.DrawPoint(x, y, paint);
            }
    }

    static byte Clamp(int v) => (byte)Math.Clamp(v, 0, 255);

    static SKPath ShapePath(int cls, float cx, float cy, float r, float angle, Random rng)
    {
        var path = new SKPath();
        switch (cls)
        {
            case 1: path.AddCircle(cx, cy, r); break;
            case 2: path.AddPoly(Shapes.Polygon(ShapeKind.Square, cx, cy, r, angle), close: true); break;
            case 3: path.AddPoly(Shapes.Polygon(ShapeKind.Triangle, cx, cy, r * 1.15, angle), close: true); break;
            default:
                path.AddOval(new SKRect(cx - r, cy - r * (float)(0.6 + 0.3 * rng.NextDouble()), cx + r, cy + r * 0.75f));
                break;
        }
        return path;
    }
}

/// <summary>Writes <see cref="SegShapesTask"/> as image / mask pair folders: OUT/seg-shapes/{train,val,test}/{images,masks}/NNNN.png
/// + OUT/seg-shapes/classes.txt, built in a temporary folder and swapped in whole.</summary>
public static class SegShapesWriter
{
    public static string Write(string outDir, int seed = 0, MiniSplitSizes? sizes = null, Action<int>? progress = null)
    {
        sizes ??= SegShapesTask.DefaultSizes;
        var task = new SegShapesTask(seed);
        string final = Path.GetFullPath(Path.Combine(outDir, SegShapesTask.Name));
        string tmp = AtomicFile.TempPathFor(final);
        try
        {
            int done = 0;
            foreach (var split in Enum.GetValues<MiniSplit>())
            {
                string dir = Path.Combine(tmp, split.ToString().ToLowerInvariant());
                Directory.CreateDirectory(Path.Combine(dir, "images"));
                Directory.CreateDirectory(Path.Combine(dir, "masks"));
                Parallel.For(0, sizes.Of(split), i =>
                {
                    var (img, mask) = task.Generate(split, i);
                    File.WriteAllBytes(Path.Combine(dir, "images", $"{i:D4}.png"), MiniSuiteWriter.EncodePng(img));
                    File.WriteAllBytes(Path.Combine(dir, "masks", $"{i:D4}.png"), LabelMaskCodec.EncodePng(mask));
                    progress?.Invoke(Interlocked.Increment(ref done));
                });
            }
            File.WriteAllLines(Path.Combine(tmp, "classes.txt"), SegShapesTask.Classes);
            AtomicFile.ReplaceDirectory(tmp, final);
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        }
        return final;
    }
}
