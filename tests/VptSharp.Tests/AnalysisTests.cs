using System.Diagnostics;
using System.Text.Json;
using SkiaSharp;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Tuning;
using VptSharp.Analysis;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

public class AnalysisTests
{
    // Inputs and constants: tools/stats_reference.py (SciPy 1.10.1, numpy 1.24.2).
    static readonly double[] Exact8X = [0.812, 0.774, 0.905, 0.661, 0.738, 0.859, 0.702, 0.931];
    static readonly double[] Exact8Y = [0.790, 0.781, 0.861, 0.652, 0.699, 0.848, 0.645, 0.902];
    static readonly double[] Exact19X = [71.3, 64.8, 88.2, 59.1, 77.4, 82.6, 69.9, 91.3, 55.7, 73.8, 66.2, 84.1, 79.5, 62.4, 87.7, 58.3, 75.1, 80.9, 68.6];
    static readonly double[] Exact19Y = [70.1, 65.9, 85.9, 58.4, 73.2, 83.5, 70.2, 87.9, 51.6, 72.0, 65.7, 79.3, 80.1, 57.8, 84.5, 60.0, 71.2, 74.4, 70.0];
    static readonly double[] ApproxX = [12, 15, 9, 20, 14, 11, 18, 16, 13, 17, 10, 19, 15, 14];
    static readonly double[] ApproxY = [10, 12, 9, 17, 16, 8, 15, 13, 11, 20, 7, 16, 14, 12];
    static readonly double[] TiesX = [5, 7, 3, 9, 6, 8, 4, 10];
    static readonly double[] TiesY = [3, 4, 2, 6, 7, 5, 2, 6];
    static readonly double[] WelchA = [0.71, 0.74, 0.69, 0.77, 0.73, 0.70, 0.75];
    static readonly double[] WelchB = [0.64, 0.79, 0.58, 0.83, 0.66];
    static readonly double[] SeedsA = [81.2, 80.7, 81.9];
    static readonly double[] SeedsB = [79.8, 80.4, 79.1];

    [Fact]
    public void MeanStdIsSampleStd()
    {
        var (mean, std) = Statistics.MeanStd(SeedsA);
        Assert.Equal(81.26666666666667, mean, 1e-12);
        Assert.Equal(0.6027713773341723, std, 1e-12);
        Assert.Equal((0.5, 0.0), Statistics.MeanStd([0.5]));
        Assert.Throws<ArgumentException>(() => Statistics.MeanStd([]));
    }

    [Theory]
    [InlineData("exact8", 1.0, 0.015625, 8, true)]
    [InlineData("exact19", 32.0, 0.00945281982421875, 19, true)]
    [InlineData("approx", 13.0, 0.019314680011257454, 13, false)] // ties + one zero difference (dropped)
    [InlineData("ties", 1.5, 0.0234375, 8, true)]                 // ties, no zero: SciPy 1.10 stays exact
    [InlineData("large", 819.5, 0.48203067842099034, 60, false)]  // 60 pairs > 50
    public void WilcoxonMatchesScipy(string name, double statistic, double p, int n, bool exact)
    {
        var (x, y) = name switch
        {
            "exact8" => (Exact8X, Exact8Y), "exact19" => (Exact19X, Exact19Y), "approx" => (ApproxX, ApproxY), "ties" => (TiesX, TiesY),
            _ => (Enumerable.Range(0, 60).Select(i => i * 37 % 101 / 10.0).ToArray(), Enumerable.Range(0, 60).Select(i => i * 53 % 97 / 10.0 + 0.05).ToArray()),
        };
        var r = Statistics.WilcoxonSignedRank(x, y);
        Assert.Equal(statistic, r.Statistic, 1e-12);
        Assert.True(Math.Abs(r.PValue - p) < (exact ? 1e-12 : 1e-9), $"p {r.PValue:R} vs SciPy {p:R}");
        Assert.Equal(n, r.N);
        Assert.Equal(exact, r.Exact);
        // Swapping the samples mirrors W+ and W−: same two-sided result — except with ties in exact mode, where
        // SciPy 1.10 truncates W+ (34.5 → 34 one way, 1.5 → 1 the other): TiesSwappedP = 0.015625.
        Assert.Equal(name == "ties" ? 0.015625 : r.PValue, Statistics.WilcoxonSignedRank(y, x).PValue, 1e-12);
    }

    [Fact]
    public void WilcoxonRejectsBadInput()
    {
        Assert.Throws<ArgumentException>(() => Statistics.WilcoxonSignedRank([1, 2], [1]));
        Assert.Throws<ArgumentException>(() => Statistics.WilcoxonSignedRank([1, 2], [1, 2]));
        // The centre of the exact distribution has p = 1 (n = 3: W+ = 3 of 6).
        Assert.Equal(1.0, Statistics.WilcoxonSignedRank([1, 2, -3], [0, 0, 0]).PValue);
    }

    [Theory]
    [InlineData("unequal", 0.5601901348323712, 4.425119963651579, 0.6025081049319152)]
    [InlineData("seeds", 2.9292504970685203, 3.97686540521242, 0.04315191325278239)]
    public void WelchMatchesScipy(string name, double t, double df, double p)
    {
        var r = name == "seeds" ? Statistics.WelchTTest(SeedsA, SeedsB) : Statistics.WelchTTest(WelchA, WelchB);
        Assert.True(Math.Abs(r.T - t) < 1e-9, $"t {r.T:R} vs {t:R}");
        Assert.True(Math.Abs(r.DegreesOfFreedom - df) < 1e-9, $"df {r.DegreesOfFreedom:R} vs {df:R}");
        Assert.True(Math.Abs(r.PValue - p) < 1e-9, $"p {r.PValue:R} vs {p:R}");
    }

    [Fact]
    public void WelchWithZeroVarianceFollowsScipy()
    {
        var differ = Statistics.WelchTTest([1, 1, 1], [2, 2, 2]);
        Assert.Equal(double.NegativeInfinity, differ.T);
        Assert.Equal(0.0, differ.PValue);
        var same = Statistics.WelchTTest([1, 1, 1], [1, 1, 1]);
        Assert.True(double.IsNaN(same.T) && double.IsNaN(same.PValue) && double.IsNaN(same.DegreesOfFreedom));
        Assert.Throws<ArgumentException>(() => Statistics.WelchTTest([1], [1, 2]));
    }

    /// <summary>4 Gaussian clusters in 50-D: centres ~ N(0, 3²), points ~ centre + N(0, 1) (distance between centres
    /// ≈ 42, within-cluster spread ≈ 10).</summary>
    static (float[,] Data, int[] Labels) Clusters(int perCluster, int clusters = 4, int dim = 50, int seed = 7)
    {
        var rng = new Random(seed);
        double Normal() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        var centres = new double[clusters, dim];
        for (int c = 0; c < clusters; c++) for (int k = 0; k < dim; k++) centres[c, k] = 3 * Normal();
        var data = new float[clusters * perCluster, dim];
        var labels = new int[clusters * perCluster];
        for (int i = 0; i < labels.Length; i++)
        {
            labels[i] = i % clusters;
            for (int k = 0; k < dim; k++) data[i, k] = (float)(centres[labels[i], k] + Normal());
        }
        return (data, labels);
    }

    /// <summary>Share of points whose nearest other point in the embedding has the same label.</summary>
    static double NeighbourPurity(double[,] y, int[] labels)
    {
        int n = labels.Length, same = 0;
        for (int i = 0; i < n; i++)
        {
            int best = -1; double bestD = double.PositiveInfinity;
            for (int j = 0; j < n; j++)
            {
                if (j == i) continue;
                double d = Math.Pow(y[i, 0] - y[j, 0], 2) + Math.Pow(y[i, 1] - y[j, 1], 2);
                if (d < bestD) { bestD = d; best = j; }
            }
            if (labels[best] == labels[i]) same++;
        }
        return (double)same / n;
    }

    /// <summary>Mean distance between class centroids / mean distance of points to their own centroid.</summary>
    static double SeparationRatio(double[,] y, int[] labels)
    {
        int classes = labels.Max() + 1;
        var cx = new double[classes]; var cy = new double[classes]; var count = new int[classes];
        for (int i = 0; i < labels.Length; i++) { cx[labels[i]] += y[i, 0]; cy[labels[i]] += y[i, 1]; count[labels[i]]++; }
        for (int c = 0; c < classes; c++) { cx[c] /= count[c]; cy[c] /= count[c]; }
        double within = 0;
        for (int i = 0; i < labels.Length; i++) within += Math.Sqrt(Math.Pow(y[i, 0] - cx[labels[i]], 2) + Math.Pow(y[i, 1] - cy[labels[i]], 2));
        within /= labels.Length;
        double between = 0; int pairs = 0;
        for (int a = 0; a < classes; a++)
            for (int b = a + 1; b < classes; b++, pairs++) between += Math.Sqrt(Math.Pow(cx[a] - cx[b], 2) + Math.Pow(cy[a] - cy[b], 2));
        return between / pairs / within;
    }

    [Fact]
    public void TsneSeparatesClustersDeterministically()
    {
        var (data, labels) = Clusters(perCluster: 150);
        var watch = Stopwatch.StartNew();
        var y = Tsne.Embed(data, new TsneOptions { Seed = 1 });
        watch.Stop();
        Assert.Equal(600, y.GetLength(0));
        Assert.Equal(2, y.GetLength(1));
        double purity = NeighbourPurity(y, labels), ratio = SeparationRatio(y, labels);
        Console.WriteLine($"t-SNE 600×50: {watch.Elapsed.TotalSeconds:F2} s, neighbour purity {purity:P2}, separation ratio {ratio:F2}");
        Assert.True(purity >= 0.95, $"neighbour purity {purity:P2}");
        Assert.True(ratio > SeparationThreshold, $"separation ratio {ratio:F2}");

        var again = Tsne.Embed(data, new TsneOptions { Seed = 1 });
        Assert.Equal(y.Cast<double>(), again.Cast<double>()); // bit-identical for a fixed seed
        var other = Tsne.Embed(data, new TsneOptions { Seed = 2, Iterations = 50 });
        Assert.NotEqual(y[0, 0], other[0, 0]);
    }

    // Measured 16.55 for the 600-point run (the shuffled-label test below shows the metric near 0 when labels mean nothing).
    const double SeparationThreshold = 10.0;

    [Fact]
    public void TsneSeparationRatioOfShuffledLabelsIsLow()
    {
        // The ratio used above must be able to fail: the same embedding with labels shuffled scores far below it.
        var (data, labels) = Clusters(perCluster: 40);
        var y = Tsne.Embed(data, new TsneOptions { Seed = 1, Perplexity = 20, Iterations = 400 });
        Assert.True(NeighbourPurity(y, labels) >= 0.95);
        var shuffled = (int[])labels.Clone();
        new Random(3).Shuffle(shuffled);
        Assert.True(SeparationRatio(y, shuffled) < 1.0, $"shuffled ratio {SeparationRatio(y, shuffled):F2}");
        Assert.True(NeighbourPurity(y, shuffled) < 0.5);
    }

    [Fact]
    public void TsneRejectsBadInput()
    {
        Assert.Throws<ArgumentException>(() => Tsne.Embed(new float[Tsne.MaxPoints + 1, 1]));
        Assert.Throws<ArgumentException>(() => Tsne.Embed(new float[10, 3])); // perplexity 30 > n - 1
        Assert.Throws<ArgumentException>(() => Tsne.Embed(new float[1, 3], new TsneOptions { Perplexity = 0.5 }));
    }

    /// <summary>Decodes a PNG (failing if it is not one) and returns its size and number of distinct colours.</summary>
    static (int Width, int Height, int Colours, int ColouredPixels) DecodePng(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], bytes[..4]);
        using var bmp = SKBitmap.Decode(bytes);
        Assert.NotNull(bmp);
        var colours = new HashSet<uint>();
        int coloured = 0; // saturated pixels: series / class colours, not the black-grey-white of axes and text
        for (int y = 0; y < bmp.Height; y++)
            for (int x = 0; x < bmp.Width; x++)
            {
                var c = bmp.GetPixel(x, y);
                colours.Add((uint)c);
                if (Math.Max(c.Red, Math.Max(c.Green, c.Blue)) - Math.Min(c.Red, Math.Min(c.Green, c.Blue)) > 60) coloured++;
            }
        return (bmp.Width, bmp.Height, colours.Count, coloured);
    }

    [Fact]
    public void LinePlotWritesAColouredPng()
    {
        var dir = TempDir();
        string png = Path.Combine(dir, "sub", "accuracy.png");
        double[] fractions = [0.01, 0.1, 0.5, 1.0];
        Plots.LinePlot(png, "Accuracy vs data fraction", "fraction of training data", "top-1 (%)",
            [new PlotSeries("vpt-deep", fractions, [41.2, 63.5, 75.1, 78.9], [1.5, 0.8, 0.6, 0.4]),
             new PlotSeries("linear", fractions, [35.0, 55.2, 66.7, 70.3], null)], logX: true);
        var (w, h, colours, coloured) = DecodePng(png);
        Console.WriteLine($"line plot: {w}×{h}, {colours} colours, {coloured} coloured pixels");
        Assert.Equal((800, 600), (w, h));
        Assert.True(colours > 20, $"{colours} colours");
        Assert.True(coloured > 1000, $"{coloured} coloured pixels");
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(png)!, "*.tmp-*")); // the temporary file was renamed away

        string small = Path.Combine(dir, "small.png");
        Plots.LinePlot(small, "depth", "prompt depth", "top-1", [new PlotSeries("a", [1, 2, 3], [1, 2, 3], [0.1, 0.1, 0.1])], width: 400, height: 300);
        var smallPng = DecodePng(small);
        Assert.Equal((400, 300), (smallPng.Width, smallPng.Height));
        Assert.Throws<ArgumentException>(() => Plots.LinePlot(small, "t", "x", "y", [new PlotSeries("a", [0, 1], [1, 2], null)], logX: true));
        Assert.Throws<ArgumentException>(() => Plots.LinePlot(small, "t", "x", "y", [new PlotSeries("a", [1, 2], [1], null)]));
    }

    [Fact]
    public void GroupedBarsDrawOneBarPerValueAndSkipMissingOnes()
    {
        var dir = TempDir();
        string all = Path.Combine(dir, "all.png"), missing = Path.Combine(dir, "missing.png");
        string[] tasks = ["t1", "t2", "t3"];
        Plots.GroupedBars(all, "per task", "top-1 (%)", tasks,
            [new PlotSeries("full", [], [90, 20, 45], [1, 2, 1]), new PlotSeries("vpt-deep", [], [80, 15, 35], null)]);
        Plots.GroupedBars(missing, "per task", "top-1 (%)", tasks,
            [new PlotSeries("full", [], [90, 20, 45], [1, 2, 1]), new PlotSeries("vpt-deep", [], [80, 15, double.NaN], null)]);
        var (w, h, _, colouredAll) = DecodePng(all);
        var (_, _, _, colouredMissing) = DecodePng(missing);
        Console.WriteLine($"bars: {w}×{h}, coloured pixels {colouredAll}, with one bar missing {colouredMissing}");
        Assert.Equal((1000, 600), (w, h));
        Assert.True(colouredAll > 20_000, $"{colouredAll} coloured pixels");
        Assert.True(colouredMissing < colouredAll - 5_000, "a NaN value must draw no bar"); // the 35 % bar is ~15k pixels
        Assert.Throws<ArgumentException>(() => Plots.GroupedBars(all, "t", "y", tasks, [new PlotSeries("a", [], [1, 2], null)]));
    }

    [Fact]
    public void ClassScatterWritesAColouredPng()
    {
        var dir = TempDir();
        var (data, labels) = Clusters(perCluster: 30);
        var points = new double[labels.Length, 2];
        for (int i = 0; i < labels.Length; i++) { points[i, 0] = data[i, 0]; points[i, 1] = data[i, 1]; }
        string png = Path.Combine(dir, "tsne.png");
        Plots.ClassScatter(png, "t-SNE", points, labels, ["a", "b", "c", "d"]);
        var (w, h, colours, coloured) = DecodePng(png);
        Console.WriteLine($"scatter: {w}×{h}, {colours} colours, {coloured} coloured pixels");
        Assert.Equal((800, 600), (w, h));
        Assert.True(colours > 20, $"{colours} colours");
        Assert.True(coloured > 1000, $"{coloured} coloured pixels");
        Assert.Throws<ArgumentException>(() => Plots.ClassScatter(png, "t", points, labels, ["a", "b"])); // label 3 has no name
    }

    [Fact]
    public void TsneCommandWritesScatterAndPoints()
    {
        var dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), classes: 3, perClass: 10);
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 3));
        TorchSharp.torch.manual_seed(1);
        var model = PromptedModel.Create(bb.Model, new LinearProbeConfig(), 3); // untrained: t-SNE needs only features
        string task = Path.Combine(dir, "task.vpt");
        TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), ["class0", "class1", "class2"], new Preprocessing { ImageSize = 32 }).Save(task);

        string png = Path.Combine(dir, "out", "tsne.png");
        var r = RunCli("tsne", "--task", task, "--data", data, "--max-images", "20", "--seed", "4", "--iterations", "300", "--out", png);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.Contains("perplexity 30 is too high for 20 images", r.Stdout);
        var (w, h, colours, _) = DecodePng(png);
        Assert.Equal((800, 600), (w, h));
        Assert.True(colours > 20);

        using var json = JsonDocument.Parse(File.ReadAllText(Path.ChangeExtension(png, ".json")));
        var points = json.RootElement.GetProperty("points").EnumerateArray().ToArray();
        Assert.Equal(20, points.Length);
        Assert.Equal(19 / 3.0, json.RootElement.GetProperty("perplexity").GetDouble(), 1e-12);
        // Stratified: 20 of 3×10 keeps each class's share (6.67 → 7, 7, 6 by largest remainder, ties to the lower class).
        Assert.Equal([7, 7, 6], Enumerable.Range(0, 3).Select(c => points.Count(p => p.GetProperty("label").GetInt32() == c)));
        Assert.All(points, p => Assert.Equal($"class{p.GetProperty("label").GetInt32()}", p.GetProperty("class").GetString()));
        Assert.Equal(20, points.Select(p => p.GetProperty("name").GetString()).Distinct().Count());
        var xs = points.Select(p => p.GetProperty("x").GetDouble()).ToArray();
        Assert.All(xs, x => Assert.True(double.IsFinite(x)));
        Assert.True(xs.Max() - xs.Min() > 1, $"embedding spread {xs.Max() - xs.Min():F3}"); // points were actually laid out

        var bad = RunCli("tsne", "--task", task, "--data", data, "--max-images", "1", "--out", png);
        Assert.Equal(1, bad.ExitCode);
        Assert.Equal("error: --max-images must be in 2..5000, got 1", bad.Stderr.Trim());
    }
}
