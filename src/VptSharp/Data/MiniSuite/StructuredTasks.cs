using SkiaSharp;

namespace VptSharp.Data.MiniSuite;

/// <summary>Flat shapes as anti-aliased polygons centred on their area centroid (so a shape's pixel centroid is its
/// recorded centre), scaled so every point lies within radius R of the centre (non-overlap checks use that circle).</summary>
public enum ShapeKind { Square, Ellipse, Heart, Arrow, Circle, Triangle }

public static class Shapes
{
    static readonly Dictionary<ShapeKind, (double X, double Y)[]> Unit = new()
    {
        [ShapeKind.Square] = [(-1, -1), (1, -1), (1, 1), (-1, 1)],
        [ShapeKind.Circle] = Ring(48, 1),
        [ShapeKind.Ellipse] = Ring(48, 0.55),
        [ShapeKind.Triangle] = [.. new[] { -90.0, 30, 150 }.Select(d => (Math.Cos(d * Math.PI / 180), Math.Sin(d * Math.PI / 180)))],
        // the classic parametric heart, tip down
        [ShapeKind.Heart] = [.. Enumerable.Range(0, 72).Select(i => 2 * Math.PI * i / 72).Select(t =>
            (16 * Math.Pow(Math.Sin(t), 3), -(13 * Math.Cos(t) - 5 * Math.Cos(2 * t) - 2 * Math.Cos(3 * t) - Math.Cos(4 * t))))],
        // a navigation-style arrowhead pointing up at angle 0: no rotational symmetry, so its orientation is defined
        // over the full 360°, and its tip is the point farthest from its centroid
        [ShapeKind.Arrow] = [(0, -1), (0.45, 0.6), (0, 0.35), (-0.45, 0.6)],
    };

    static (double, double)[] Ring(int n, double aspect) =>
        Enumerable.Range(0, n).Select(i => (Math.Cos(2 * Math.PI * i / n), aspect * Math.Sin(2 * Math.PI * i / n))).ToArray();

    /// <summary>The polygon of <paramref name="kind"/> at (cx, cy), radius <paramref name="radius"/>, turned clockwise by
    /// <paramref name="degrees"/> (image coordinates, y down).</summary>
    public static SKPoint[] Polygon(ShapeKind kind, double cx, double cy, double radius, double degrees)
    {
        var pts = Unit[kind];
        // area centroid (shoelace)
        double a = 0, gx = 0, gy = 0;
        for (int i = 0; i < pts.Length; i++)
        {
            var (x0, y0) = pts[i]; var (x1, y1) = pts[(i + 1) % pts.Length];
            double cross = x0 * y1 - x1 * y0;
            a += cross; gx += (x0 + x1) * cross; gy += (y0 + y1) * cross;
        }
        gx /= 3 * a; gy /= 3 * a;
        double reach = pts.Max(p => Math.Sqrt((p.X - gx) * (p.X - gx) + (p.Y - gy) * (p.Y - gy)));
        double s = radius / reach, th = degrees * Math.PI / 180, cos = Math.Cos(th), sin = Math.Sin(th);
        return pts.Select(p =>
        {
            double x = (p.X - gx) * s, y = (p.Y - gy) * s;
            return new SKPoint((float)(cx + x * cos - y * sin), (float)(cy + x * sin + y * cos));
        }).ToArray();
    }

    public static void Fill(SKCanvas canvas, SKPoint[] polygon, SKColor color)
    {
        using var path = new SKPath();
        path.AddPoly(polygon, close: true);
        using var paint = new SKPaint { Color = color, IsAntialias = true, Style = SKPaintStyle.Fill };
        canvas.DrawPath(path, paint);
    }
}

/// <summary>
/// dSprites-location-like: one white square, ellipse or heart (radius 3–5 px, any rotation) on black; label = bin of
/// the centre's x over [6, 26) px in 8 bins of 2.5 px (VTAB uses 16 bins of the 64-px original; 8 suit 32 px).
/// </summary>
public sealed class DspritesLocationTask(int seed) : MiniTask(seed)
{
    public const double XMin = 6, XMax = 26;
    public const int Bins = 8;
    static readonly ShapeKind[] Kinds = [ShapeKind.Square, ShapeKind.Ellipse, ShapeKind.Heart];

    public override string Name => "dsprites-loc";
    public override string Group => "Structured";
    public override IReadOnlyList<string> Classes { get; } = Enumerable.Range(0, Bins).Select(b => $"x{XMin + b * BinWidth:F1}-{XMin + (b + 1) * BinWidth:F1}").ToArray();
    public override string Description => "one white square/ellipse/heart on black; label = x-position bin (8 bins of 2.5 px)";
    public static double BinWidth => (XMax - XMin) / Bins;

    public static int BinOf(double x) => Math.Clamp((int)Math.Floor((x - XMin) / BinWidth), 0, Bins - 1);

    protected override MiniSample Render(MiniSplit split, int index, int label, Random rng)
    {
        int kind = rng.Next(Kinds.Length);
        double x = XMin + BinWidth * (label + rng.NextDouble()), y = Uniform(rng, XMin, XMax);
        double radius = Uniform(rng, 3, 5), angle = Uniform(rng, 0, 360);
        var image = Draw(SKColors.Black, c => Shapes.Fill(c, Shapes.Polygon(Kinds[kind], x, y, radius, angle), SKColors.White));
        return new MiniSample(image, label, Factors(("x", x), ("y", y), ("radius", radius), ("angle", angle), ("shape", kind)));
    }
}

/// <summary>
/// dSprites-orientation-like: one white arrow or heart (no rotational symmetry) on black at a random position and
/// size; label = orientation bin, 8 bins of 45° over 360° (clockwise from pointing up).
/// </summary>
public sealed class DspritesOrientationTask(int seed) : MiniTask(seed)
{
    public const int Bins = 8;
    static readonly ShapeKind[] Kinds = [ShapeKind.Arrow, ShapeKind.Heart];

    public override string Name => "dsprites-ori";
    public override string Group => "Structured";
    public override IReadOnlyList<string> Classes { get; } = Enumerable.Range(0, Bins).Select(b => $"deg{b * 360 / Bins:D3}-{(b + 1) * 360 / Bins:D3}").ToArray();
    public override string Description => "one white arrow/heart on black; label = orientation bin (8 bins of 45 degrees)";

    protected override MiniSample Render(MiniSplit split, int index, int label, Random rng)
    {
        int kind = rng.Next(Kinds.Length);
        double angle = (label + rng.NextDouble()) * 360.0 / Bins;
        double radius = Uniform(rng, 5, 9);
        double x = Uniform(rng, radius + 1, ImageSize - radius - 1), y = Uniform(rng, radius + 1, ImageSize - radius - 1);
        var image = Draw(SKColors.Black, c => Shapes.Fill(c, Shapes.Polygon(Kinds[kind], x, y, radius, angle), SKColors.White));
        return new MiniSample(image, label, Factors(("angle", angle), ("x", x), ("y", y), ("radius", radius), ("shape", kind)));
    }
}

/// <summary>Shared by the CLEVR-like tasks: non-overlapping circles, squares and triangles of random colours on a
/// uniform grey, at least <see cref="Gap"/> px apart so each is its own connected blob of pixels.</summary>
public abstract class SceneTask(int seed) : MiniTask(seed)
{
    public const double MinRadius = 2.5, MaxRadius = 3.5;
    /// <summary>3 px: two pixels touching different shapes can then never be neighbours, even diagonally (2√2 &lt; 3).</summary>
    public const double Gap = 3;
    static readonly ShapeKind[] Kinds = [ShapeKind.Circle, ShapeKind.Square, ShapeKind.Triangle];

    public sealed record Placed(double X, double Y, double Radius);

    protected static SKColor Background(Random rng) { byte g = (byte)rng.Next(40, 111); return new SKColor(g, g, g); }

    /// <summary>A colour whose largest channel difference from the background is at least 80.</summary>
    protected static SKColor ShapeColor(Random rng, SKColor bg)
    {
        while (true)
        {
            var c = RandomColor(rng);
            if (Math.Max(Math.Abs(c.Red - bg.Red), Math.Max(Math.Abs(c.Green - bg.Green), Math.Abs(c.Blue - bg.Blue))) >= 80) return c;
        }
    }

    protected static bool Fits(double x, double y, double r) => x >= r + 0.5 && x <= ImageSize - r - 0.5 && y >= r + 0.5 && y <= ImageSize - r - 0.5;

    protected static bool Clear(IEnumerable<Placed> placed, double x, double y, double r) =>
        placed.All(p => Math.Sqrt((p.X - x) * (p.X - x) + (p.Y - y) * (p.Y - y)) >= p.Radius + r + Gap);

    protected static RgbImage Paint(SKColor bg, IReadOnlyList<Placed> shapes, Random rng) => Draw(bg, canvas =>
    {
        foreach (var s in shapes)
            Shapes.Fill(canvas, Shapes.Polygon(Kinds[rng.Next(Kinds.Length)], s.X, s.Y, s.Radius, Uniform(rng, 0, 360)), ShapeColor(rng, bg));
    });

    protected static Dictionary<string, double> BackgroundFactors(SKColor bg) => Factors(("background", bg.Red));
}

/// <summary>CLEVR-count-like: 1–6 non-overlapping shapes; label = count − 1. Sizes do not depend on the count.</summary>
public sealed class CountTask(int seed) : SceneTask(seed)
{
    public const int MaxCount = 6;
    public override string Name => "count";
    public override string Group => "Structured";
    public override IReadOnlyList<string> Classes { get; } = Enumerable.Range(1, MaxCount).Select(n => n.ToString()).ToArray();
    public override string Description => "1-6 non-overlapping shapes of random colours; label = count - 1";

    protected override MiniSample Render(MiniSplit split, int index, int label, Random rng)
    {
        var bg = Background(rng);
        var placed = new List<Placed>();
        while (placed.Count < label + 1)
        {
            // random sequential placement; a layout that jams starts over (deterministic: same generator)
            placed.Clear();
            for (int tries = 0; tries < 400 && placed.Count < label + 1; tries++)
            {
                double r = Uniform(rng, MinRadius, MaxRadius), x = Uniform(rng, 0, ImageSize), y = Uniform(rng, 0, ImageSize);
                if (Fits(x, y, r) && Clear(placed, x, y, r)) placed.Add(new Placed(x, y, r));
            }
        }
        var f = BackgroundFactors(bg);
        f["count"] = placed.Count;
        return new MiniSample(Paint(bg, placed, rng), label, f);
    }
}

/// <summary>
/// CLEVR-distance-like: two shapes; label = bin of the Euclidean distance between their centres, 6 bins of 3.5 px
/// over [10, 31) px (10 = the closest two shapes of the largest size may be).
/// </summary>
public sealed class DistanceTask(int seed) : SceneTask(seed)
{
    public const double DMin = 10, DMax = 31;
    public const int Bins = 6;
    public static double BinWidth => (DMax - DMin) / Bins;
    public static int BinOf(double d) => Math.Clamp((int)Math.Floor((d - DMin) / BinWidth), 0, Bins - 1);

    public override string Name => "distance";
    public override string Group => "Structured";
    public override IReadOnlyList<string> Classes { get; } = Enumerable.Range(0, Bins).Select(b => $"d{DMin + b * BinWidth:F1}-{DMin + (b + 1) * BinWidth:F1}").ToArray();
    public override string Description => "two shapes; label = centre-to-centre distance bin (6 bins of 3.5 px from 10 px)";

    protected override MiniSample Render(MiniSplit split, int index, int label, Random rng)
    {
        var bg = Background(rng);
        double d = DMin + BinWidth * (label + rng.NextDouble());
        Placed a, b;
        while (true)
        {
            double r1 = Uniform(rng, MinRadius, MaxRadius), r2 = Uniform(rng, MinRadius, MaxRadius);
            double x1 = Uniform(rng, 0, ImageSize), y1 = Uniform(rng, 0, ImageSize), dir = Uniform(rng, 0, 2 * Math.PI);
            double x2 = x1 + d * Math.Cos(dir), y2 = y1 + d * Math.Sin(dir);
            if (Fits(x1, y1, r1) && Fits(x2, y2, r2)) { a = new Placed(x1, y1, r1); b = new Placed(x2, y2, r2); break; }
        }
        var f = BackgroundFactors(bg);
        f["x1"] = a.X; f["y1"] = a.Y; f["x2"] = b.X; f["y2"] = b.Y; f["distance"] = d;
        return new MiniSample(Paint(bg, [a, b], rng), label, f);
    }
}
