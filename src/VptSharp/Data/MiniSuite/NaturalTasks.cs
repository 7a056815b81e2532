using SkiaSharp;

namespace VptSharp.Data.MiniSuite;

/// <summary>
/// Fashion-MNIST classes 5–9 only (sandal, shirt, sneaker, bag, ankle-boot): the embedded default backbone was
/// pretrained on classes 0–4, so these are unseen. Train and val come from the train split (train from the front of
/// a seeded per-class shuffle, val from its back, so they never overlap), test from t10k; 28 px resized to 32 px
/// bilinearly, as the pretraining pipeline saw them.
/// </summary>
public sealed class FashionMnistUnseenTask(int seed, string? dir = null) : MiniTask(seed)
{
    const int FirstClass = 5;
    public override string Name => "fmnist-5to9";
    public override string Group => "Natural";
    public override IReadOnlyList<string> Classes { get; } = FashionMnist.ClassNames[FirstClass..];
    public override string Description => "Fashion-MNIST classes 5-9 (unseen by the default backbone); test from t10k";

    readonly Lazy<(FashionMnist Data, int[][] PerClass)> train = new(() => Load("train", seed, dir));
    readonly Lazy<(FashionMnist Data, int[][] PerClass)> test = new(() => Load("test", seed, dir));

    static (FashionMnist, int[][]) Load(string split, int seed, string? dir)
    {
        var data = new FashionMnist(split, dir);
        var perClass = Enumerable.Range(FirstClass, 10 - FirstClass).Select(c =>
        {
            var idx = Enumerable.Range(0, data.Count).Where(i => data.LabelOf(i) == c).ToArray();
            new Random(StableSeed.Of(seed, split == "train" ? 0 : 1, c)).Shuffle(idx);
            return idx;
        }).ToArray();
        return (data, perClass);
    }

    protected override MiniSample Render(MiniSplit split, int index, int label, Random rng)
    {
        var (data, perClass) = split == MiniSplit.Test ? test.Value : train.Value;
        var pool = perClass[label];
        int k = index / Classes.Count;
        if (k >= pool.Length / (split == MiniSplit.Test ? 1 : 2))
            throw new ArgumentException($"fmnist-5to9: {split} index {index} needs more than the {pool.Length} Fashion-MNIST images of class {FirstClass + label}; use fewer images");
        int source = split == MiniSplit.Val ? pool[^(k + 1)] : pool[k];
        var image = ImageTransform.Resize(data.Load(source), ImageSize, ImageSize);
        return new MiniSample(image, label, Factors(("source_index", source)));
    }
}

/// <summary>
/// notMNIST-like letters A–J, each in a random installed font (every *.ttf/*.otf under the font folder, sorted by
/// path so the choice is deterministic on a machine with the same fonts), random size, ±3 px jitter, rotation
/// ±15°, and random foreground/background colours of distinct brightness.
/// </summary>
public sealed class GlyphsTask(int seed, string? fontDir = null) : MiniTask(seed)
{
    public const string DefaultFontDir = "/usr/share/fonts/truetype";
    const string Letters = "ABCDEFGHIJ";

    public override string Name => "glyphs";
    public override string Group => "Natural";
    public override IReadOnlyList<string> Classes { get; } = Letters.Select(c => c.ToString()).ToArray();
    public override string Description => "letters A-J in every installed font, random size/position/rotation/colours (notMNIST-like)";

    readonly Lazy<SKTypeface[]> fonts = new(() => LoadFonts(fontDir ?? DefaultFontDir));
    public IReadOnlyList<SKTypeface> Fonts => fonts.Value;

    /// <summary>Font files that draw all of A–J, in ordinal path order.</summary>
    public static SKTypeface[] LoadFonts(string dir)
    {
        var files = Directory.Exists(dir)
            ? Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
                .Where(f => f.EndsWith(".ttf", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".otf", StringComparison.OrdinalIgnoreCase))
                .Order(StringComparer.Ordinal).ToArray()
            : [];
        var faces = new List<SKTypeface>();
        foreach (var f in files)
        {
            var face = SKTypeface.FromFile(f);
            if (face is null) continue;
            using var font = new SKFont(face);
            if (font.GetGlyphs(Letters).All(g => g != 0)) faces.Add(face);
            else face.Dispose();
        }
        if (faces.Count == 0)
            throw new InputFileException(dir, "no usable fonts (*.ttf, *.otf) for the glyphs task; install some with 'apt-get install fonts-dejavu-core fonts-liberation fonts-freefont-ttf'", setting: "font-dir");
        return faces.ToArray();
    }

    protected override MiniSample Render(MiniSplit split, int index, int label, Random rng)
    {
        var faces = fonts.Value;
        int face = rng.Next(faces.Length);
        float size = (float)Uniform(rng, 16, 28), angle = (float)Uniform(rng, -15, 15);
        float dx = (float)Uniform(rng, -3, 3), dy = (float)Uniform(rng, -3, 3);
        SKColor bg, fg;
        do { bg = RandomColor(rng); fg = RandomColor(rng); } while (Math.Abs(Luma(bg) - Luma(fg)) < 80);
        string letter = Letters[label].ToString();
        var image = Draw(bg, canvas =>
        {
            using var font = new SKFont(faces[face], size) { Edging = SKFontEdging.Antialias, Subpixel = true };
            font.MeasureText(letter, out var bounds);
            // shrink a glyph that would not fit in 28 px (wide or tall faces at the largest sizes)
            float fit = Math.Min(1f, 28f / Math.Max(1f, Math.Max(bounds.Width, bounds.Height)));
            using var paint = new SKPaint { Color = fg, IsAntialias = true };
            canvas.Translate(ImageSize / 2f + dx, ImageSize / 2f + dy);
            canvas.RotateDegrees(angle);
            canvas.Scale(fit);
            canvas.DrawText(letter, -bounds.MidX, -bounds.MidY, SKTextAlign.Left, font, paint);
        });
        return new MiniSample(image, label, Factors(("font", face), ("size", size), ("angle", angle), ("dx", dx), ("dy", dy)));
    }

    static double Luma(SKColor c) => 0.299 * c.Red + 0.587 * c.Green + 0.114 * c.Blue;
}
