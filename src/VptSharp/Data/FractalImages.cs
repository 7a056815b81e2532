namespace VptSharp.Data;

/// <summary>
/// Formula-driven synthetic images in the manner of FractalDB (Kataoka et al., ACCV 2020): each class is one
/// random iterated function system (IFS) of 2–4 contractive affine maps; each sample renders that system by
/// the chaos game with a per-sample perturbation of one map, colour, flip and position jitter. Deterministic in
/// (seed, class, index); no image is stored.
/// </summary>
public sealed class FractalImages : ImageDataset
{
    readonly double[][] systems; // per class: maps × 7 (a,b,c,d,e,f,p)
    readonly int perClass, size, seed, points;
    readonly string[] classes;

    public FractalImages(int numClasses, int perClass, int size = 32, int seed = 0, int points = 3000)
    {
        this.perClass = perClass; this.size = size; this.seed = seed; this.points = points;
        classes = Enumerable.Range(0, numClasses).Select(i => $"ifs-{i:D4}").ToArray();
        systems = new double[numClasses][];
        var rng = new Random(seed);
        for (int c = 0; c < numClasses; c++)
        {
            double[] sys;
            do sys = RandomSystem(rng); while (FillRate(sys) < 0.12);
            systems[c] = sys;
        }
    }

    static double[] RandomSystem(Random rng)
    {
        int maps = rng.Next(2, 5);
        var s = new double[maps * 7];
        double total = 0;
        for (int m = 0; m < maps; m++)
        {
            double a, b, c, d;
            do { a = U(rng); b = U(rng); c = U(rng); d = U(rng); }
            while (Math.Abs(a * d - b * c) > 0.9 || a * a + b * b + c * c + d * d > 1.6); // keep each map contractive
            s[m * 7] = a; s[m * 7 + 1] = b; s[m * 7 + 2] = c; s[m * 7 + 3] = d;
            s[m * 7 + 4] = U(rng); s[m * 7 + 5] = U(rng);
            s[m * 7 + 6] = Math.Max(Math.Abs(a * d - b * c), 0.02);
            total += s[m * 7 + 6];
        }
        for (int m = 0; m < maps; m++) s[m * 7 + 6] /= total;
        return s;
    }

    static double U(Random r) => 2 * r.NextDouble() - 1;

    double FillRate(double[] sys)
    {
        var canvas = Render(sys, new Random(1), 64, 4000, out _);
        return canvas.Count(v => v > 0) / (64.0 * 64.0);
    }

    /// <summary>Chaos game; the attractor is scaled to fit the canvas. Returns hit counts per pixel.</summary>
    static float[] Render(double[] sys, Random rng, int size, int points, out int maps)
    {
        maps = sys.Length / 7;
        var xs = new double[points]; var ys = new double[points];
        double x = 0, y = 0;
        for (int i = -20; i < points; i++)
        {
            double r = rng.NextDouble(), acc = 0;
            int m = 0;
            for (; m < maps - 1; m++) { acc += sys[m * 7 + 6]; if (r < acc) break; }
            double nx = sys[m * 7] * x + sys[m * 7 + 1] * y + sys[m * 7 + 4];
            double ny = sys[m * 7 + 2] * x + sys[m * 7 + 3] * y + sys[m * 7 + 5];
            x = nx; y = ny;
            if (i >= 0) { xs[i] = x; ys[i] = y; }
        }
        double minX = xs.Min(), maxX = xs.Max(), minY = ys.Min(), maxY = ys.Max();
        double scale = (size - 2) / Math.Max(Math.Max(maxX - minX, maxY - minY), 1e-9);
        var canvas = new float[size * size];
        for (int i = 0; i < points; i++)
        {
            int px = (int)((xs[i] - minX) * scale) + 1, py = (int)((ys[i] - minY) * scale) + 1;
            if (px >= 0 && px < size && py >= 0 && py < size) canvas[py * size + px] += 1;
        }
        return canvas;
    }

    public override int Count => classes.Length * perClass;
    public override IReadOnlyList<string> Classes => classes;
    public override int LabelOf(int index) => index / perClass;
    public override string NameOf(int index) => $"fractal:{seed}:{index / perClass}#{index % perClass}";

    public override RgbImage Load(int index)
    {
        int c = index / perClass;
        var rng = new Random(StableSeed.Of(seed, c, index % perClass));
        var sys = (double[])systems[c].Clone();
        // FractalDB-style instance variation: scale one parameter of one map by a factor in [0.8, 1.2].
        int k = rng.Next(sys.Length / 7) * 7 + rng.Next(4);
        sys[k] *= 0.8 + 0.4 * rng.NextDouble();
        var canvas = Render(sys, rng, size, points, out _);
        bool flip = rng.Next(2) == 1;
        float max = canvas.Max();
        var col = new float[3];
        for (int ch = 0; ch < 3; ch++) col[ch] = 0.3f + 0.7f * (float)rng.NextDouble();
        var px = new byte[size * size * 3];
        for (int yy = 0; yy < size; yy++)
            for (int xx = 0; xx < size; xx++)
            {
                float v = canvas[yy * size + (flip ? size - 1 - xx : xx)];
                float intensity = v <= 0 ? 0 : 0.35f + 0.65f * MathF.Sqrt(v / max);
                for (int ch = 0; ch < 3; ch++) px[3 * (yy * size + xx) + ch] = (byte)(255 * intensity * col[ch]);
            }
        return new RgbImage(size, size, px);
    }
}
