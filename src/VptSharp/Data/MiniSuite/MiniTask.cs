using SkiaSharp;

namespace VptSharp.Data.MiniSuite;

public enum MiniSplit { Train, Val, Test }

/// <summary>One generated image with its label and the factors it was drawn from (e.g. "x", "count"), for checks.</summary>
public sealed record MiniSample(RgbImage Image, int Label, IReadOnlyDictionary<string, double> Factors);

/// <summary>Images per split; the defaults are VTAB-1k's (800 train, 200 val) with a 1,000-image test set.</summary>
public sealed record MiniSplitSizes(int Train = 800, int Val = 200, int Test = 1000)
{
    public int Of(MiniSplit split) => split switch { MiniSplit.Train => Train, MiniSplit.Val => Val, _ => Test };
}

/// <summary>
/// A task of the offline mini-suite: deterministic in (seed, split, index), so any sample can be regenerated alone
/// and generation can run in parallel. Labels cycle (label = index mod classes), so every split is class-balanced
/// within one image; generators draw the factors of variation given that label.
/// </summary>
public abstract class MiniTask(int seed)
{
    public const int ImageSize = 32; // the embedded default backbone is a 32-px ViT

    public int Seed => seed;
    /// <summary>Folder and task name, e.g. "dsprites-loc".</summary>
    public abstract string Name { get; }
    /// <summary>VTAB-1k group: Natural, Specialized or Structured.</summary>
    public abstract string Group { get; }
    public abstract IReadOnlyList<string> Classes { get; }
    /// <summary>One line for listings: what the images show and what the label means.</summary>
    public abstract string Description { get; }

    public MiniSample Generate(MiniSplit split, int index)
    {
        int label = index % Classes.Count;
        var rng = new Random(StableSeed.Of(seed, NameKey(Name), (int)split, index));
        return Render(split, index, label, rng);
    }

    protected abstract MiniSample Render(MiniSplit split, int index, int label, Random rng);

    static long NameKey(string name) => StableSeed.Of(name.Select(c => (long)c).ToArray());

    /// <summary>Draws on a fresh 32×32 canvas and returns its RGB pixels.</summary>
    protected static RgbImage Draw(SKColor background, Action<SKCanvas> draw)
    {
        using var bmp = new SKBitmap(new SKImageInfo(ImageSize, ImageSize, SKColorType.Rgba8888, SKAlphaType.Premul));
        using (var canvas = new SKCanvas(bmp))
        {
            canvas.Clear(background);
            draw(canvas);
        }
        var src = bmp.GetPixelSpan();
        var px = new byte[ImageSize * ImageSize * 3];
        for (int i = 0; i < ImageSize * ImageSize; i++) { px[3 * i] = src[4 * i]; px[3 * i + 1] = src[4 * i + 1]; px[3 * i + 2] = src[4 * i + 2]; }
        return new RgbImage(ImageSize, ImageSize, px);
    }

    protected static SKColor RandomColor(Random rng, int min = 0, int max = 256) =>
        new((byte)rng.Next(min, max), (byte)rng.Next(min, max), (byte)rng.Next(min, max));

    protected static double Uniform(Random rng, double a, double b) => a + (b - a) * rng.NextDouble();

    /// <summary>Standard normal (Box–Muller), from the sample's own generator.</summary>
    protected static double Gaussian(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    protected static Dictionary<string, double> Factors(params (string Name, double Value)[] f) => f.ToDictionary(x => x.Name, x => x.Value);
}

/// <summary>The tasks of the mini-suite by name, in suite order (Natural, Specialized, Structured).</summary>
public static class MiniTasks
{
    public static readonly IReadOnlyList<string> Names =
        ["fmnist-5to9", "glyphs", "textures", "dsprites-loc", "dsprites-ori", "count", "distance"];

    /// <param name="fontDir">glyphs only: where to look for fonts (default /usr/share/fonts/truetype).</param>
    public static MiniTask Create(string name, int seed = 0, string? fontDir = null) => name switch
    {
        "fmnist-5to9" => new FashionMnistUnseenTask(seed),
        "glyphs" => new GlyphsTask(seed, fontDir),
        "textures" => new TexturesTask(seed),
        "dsprites-loc" => new DspritesLocationTask(seed),
        "dsprites-ori" => new DspritesOrientationTask(seed),
        "count" => new CountTask(seed),
        "distance" => new DistanceTask(seed),
        _ => throw new ArgumentException($"unknown mini-suite task '{name}'; use one of {string.Join(", ", Names)} or all"),
    };
}
