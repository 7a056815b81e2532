namespace VptSharp.Data.MiniSuite;

/// <summary>
/// Procedural texture classes, a DTD / remote-sensing-like task: stripes (horizontal, vertical or diagonal, ±10°),
/// checkerboard, dots, grid, waves and blobs, each with random scale, phase, orientation, edge sharpness, two
/// random colours, contrast 35–100% and additive Gaussian noise.
/// </summary>
public sealed class TexturesTask(int seed) : MiniTask(seed)
{
    public override string Name => "textures";
    public override string Group => "Specialized";
    public override IReadOnlyList<string> Classes { get; } =
        ["stripes-horizontal", "stripes-vertical", "stripes-diagonal", "checkerboard", "dots", "grid", "waves", "blobs"];
    public override string Description => "8 procedural textures (stripes x3 orientations, checkerboard, dots, grid, waves, blobs), random scale/phase/colour/contrast/noise";

    protected override MiniSample Render(MiniSplit split, int index, int label, Random rng)
    {
        double deg = label switch
        {
            0 => 90, 1 => 0, 2 => rng.Next(2) == 0 ? 45 : 135, // stripe classes: direction across the stripes
            _ => Uniform(rng, 0, 180),
        };
        if (label <= 2) deg += Uniform(rng, -10, 10);
        double th = deg * Math.PI / 180, cos = Math.Cos(th), sin = Math.Sin(th);
        double period = Uniform(rng, 4, 10), phaseU = rng.NextDouble() * period, phaseV = rng.NextDouble() * period;
        double sharp = Uniform(rng, 1, 5);
        double radius = Uniform(rng, 0.2, 0.35) * period, lineWidth = Uniform(rng, 0.8, 1.6);
        double waveAmp = Uniform(rng, 1.5, 3), wavePeriod = Uniform(rng, 8, 16);
        int cell = rng.Next(4, 9), cells = ImageSize / cell + 2;
        var lattice = new double[cells * cells];
        for (int i = 0; i < lattice.Length; i++) lattice[i] = rng.NextDouble();

        var c0 = RandomColor(rng); var c1 = RandomColor(rng);
        double contrast = Uniform(rng, 0.35, 1), noise = Uniform(rng, 0, 12);
        var px = new byte[ImageSize * ImageSize * 3];
        for (int y = 0; y < ImageSize; y++)
            for (int x = 0; x < ImageSize; x++)
            {
                double u = x * cos + y * sin + phaseU, v = -x * sin + y * cos + phaseV;
                double p = label switch
                {
                    <= 2 => Soft(Math.Sin(2 * Math.PI * u / period), sharp),
                    3 => Soft(Math.Sin(2 * Math.PI * u / period) * Math.Sin(2 * Math.PI * v / period) * 2, sharp),
                    4 => Edge(radius - Hypot(Wrap(u, period), Wrap(v, period))),
                    5 => Edge(lineWidth / 2 - Math.Min(Math.Abs(Wrap(u, period)), Math.Abs(Wrap(v, period)))),
                    6 => Soft(Math.Sin(2 * Math.PI * (u + waveAmp * Math.Sin(2 * Math.PI * v / wavePeriod)) / period), sharp),
                    _ => Soft((ValueNoise(lattice, cells, x / (double)cell, y / (double)cell) - 0.5) * 4, sharp),
                };
                int o = 3 * (y * ImageSize + x);
                px[o] = Mix(c0.Red, c1.Red, contrast * p, noise * Gaussian(rng));
                px[o + 1] = Mix(c0.Green, c1.Green, contrast * p, noise * Gaussian(rng));
                px[o + 2] = Mix(c0.Blue, c1.Blue, contrast * p, noise * Gaussian(rng));
            }
        return new MiniSample(new RgbImage(ImageSize, ImageSize, px), label,
            Factors(("angle", deg), ("period", period), ("contrast", contrast), ("noise", noise)));
    }

    /// <summary>[-1, 1] → [0, 1] with an edge from smooth (sharpness 1) to nearly square.</summary>
    static double Soft(double s, double sharpness) => 0.5 + 0.5 * Math.Tanh(sharpness * s);
    /// <summary>Anti-aliased step over one pixel: signed distance → coverage.</summary>
    static double Edge(double signedDistance) => Math.Clamp(signedDistance + 0.5, 0, 1);
    /// <summary>Offset from the nearest lattice line, in (-period/2, period/2].</summary>
    static double Wrap(double t, double period) => t - period * Math.Round(t / period);
    static double Hypot(double a, double b) => Math.Sqrt(a * a + b * b);

    static double ValueNoise(double[] lattice, int cells, double x, double y)
    {
        int ix = (int)x, iy = (int)y;
        double fx = Smooth(x - ix), fy = Smooth(y - iy);
        double At(int i, int j) => lattice[(j % cells) * cells + i % cells];
        return (1 - fy) * ((1 - fx) * At(ix, iy) + fx * At(ix + 1, iy)) + fy * ((1 - fx) * At(ix, iy + 1) + fx * At(ix + 1, iy + 1));
    }

    static double Smooth(double t) => t * t * (3 - 2 * t);

    static byte Mix(byte a, byte b, double t, double noise) => (byte)Math.Clamp(Math.Round(a + (b - a) * t + noise), 0, 255);
}
