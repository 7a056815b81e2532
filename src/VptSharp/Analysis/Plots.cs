using ScottPlot;
using VptSharp.IO;

namespace VptSharp.Analysis;

/// <summary>One line of a <see cref="Plots.LinePlot"/>: y = Mean at each X, with ±Std error bars when Std is given
/// (e.g. the mean and sample std over seeds from <see cref="Statistics.MeanStd"/>).</summary>
public sealed record PlotSeries(string Name, double[] X, double[] Mean, double[]? Std);

/// <summary>PNG figures for experiments (ScottPlot 5): accuracy curves and t-SNE class scatters. Files are written
/// atomically (temporary file, then rename), so a reader never sees a half-written image.</summary>
public static class Plots
{
    public const int DefaultWidth = 800, DefaultHeight = 600;

    /// <summary>Lines with markers and ±std error bars, one per series, with a legend: accuracy vs data fraction,
    /// prompt length or prompt depth. <paramref name="logX"/> plots log10(x) with ticks labelled in x.</summary>
    public static void LinePlot(string pngPath, string title, string xLabel, string yLabel, IReadOnlyList<PlotSeries> series,
        bool logX = false, int width = DefaultWidth, int height = DefaultHeight)
    {
        if (series.Count == 0) throw new ArgumentException("LinePlot needs at least one series");
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        for (int s = 0; s < series.Count; s++)
        {
            var ser = series[s];
            if (ser.X.Length != ser.Mean.Length || (ser.Std is { } sd && sd.Length != ser.X.Length))
                throw new ArgumentException($"series '{ser.Name}': X, Mean and Std must have the same length");
            if (logX && ser.X.Any(x => !(x > 0))) throw new ArgumentException($"series '{ser.Name}': log x needs x > 0");
            double[] xs = logX ? ser.X.Select(Math.Log10).ToArray() : ser.X;
            var color = palette.GetColor(s);
            var line = plot.Add.Scatter(xs, ser.Mean, color);
            line.LegendText = ser.Name;
            line.LineWidth = 2;
            line.MarkerSize = 8;
            if (ser.Std is { } std)
            {
                var bars = plot.Add.ErrorBar(xs, ser.Mean, std);
                bars.Color = color;
            }
        }
        if (logX)
        {
            double decades = series.Max(s => s.X.Max()) / series.Min(s => s.X.Min());
            var ticks = new ScottPlot.TickGenerators.NumericAutomatic
            {
                MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
                IntegerTicksOnly = decades >= 100, // whole decades once the axis spans two; finer ticks on shorter spans
                LabelFormatter = v => Math.Pow(10, v).ToString("G3"),
            };
            plot.Axes.Bottom.TickGenerator = ticks;
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.ShowLegend();
        Save(plot, pngPath, width, height);
    }

    /// <summary>2-D points (e.g. a t-SNE embedding [n, 2]) coloured by class, one legend entry per class present.</summary>
    public static void ClassScatter(string pngPath, string title, double[,] points, int[] labels, IReadOnlyList<string> classNames,
        int width = DefaultWidth, int height = DefaultHeight)
    {
        int n = points.GetLength(0);
        if (points.GetLength(1) != 2) throw new ArgumentException($"ClassScatter needs [n, 2] points, got [{n}, {points.GetLength(1)}]");
        if (labels.Length != n) throw new ArgumentException($"ClassScatter: {labels.Length} labels for {n} points");
        if (labels.Any(l => l < 0 || l >= classNames.Count)) throw new ArgumentException($"ClassScatter: a label is outside 0..{classNames.Count - 1}");
        var plot = new Plot();
        // Category10 for up to 10 classes; beyond that, evenly spaced hues stay distinguishable enough for a scatter.
        IPalette palette = classNames.Count <= 10 ? new ScottPlot.Palettes.Category10() : new ScottPlot.Palettes.Category20();
        for (int c = 0; c < classNames.Count; c++)
        {
            var idx = Enumerable.Range(0, n).Where(i => labels[i] == c).ToArray();
            if (idx.Length == 0) continue;
            var color = classNames.Count <= 20 ? palette.GetColor(c) : Color.FromHSL((float)c / classNames.Count, 0.7f, 0.5f);
            var dots = plot.Add.ScatterPoints(idx.Select(i => points[i, 0]).ToArray(), idx.Select(i => points[i, 1]).ToArray(), color);
            dots.LegendText = classNames[c];
            dots.MarkerSize = 5;
        }
        plot.Title(title);
        plot.ShowLegend();
        Save(plot, pngPath, width, height);
    }

    /// <summary>Grouped bars: one group per category (e.g. task), one bar per series (e.g. method) with ±std error bars;
    /// a missing value is NaN and draws no bar.</summary>
    public static void GroupedBars(string pngPath, string title, string yLabel, IReadOnlyList<string> categories, IReadOnlyList<PlotSeries> series,
        int width = 1000, int height = DefaultHeight)
    {
        if (series.Count == 0 || categories.Count == 0) throw new ArgumentException("GroupedBars needs at least one category and one series");
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        double slot = 0.8 / series.Count; // bars of one group fill 80 % of its unit width
        for (int s = 0; s < series.Count; s++)
        {
            var ser = series[s];
            if (ser.Mean.Length != categories.Count || (ser.Std is { } sd && sd.Length != categories.Count))
                throw new ArgumentException($"series '{ser.Name}': one value per category needed");
            var color = palette.GetColor(s);
            var bars = Enumerable.Range(0, categories.Count).Where(c => !double.IsNaN(ser.Mean[c])).Select(c => new Bar
            {
                Position = c - 0.4 + slot * (s + 0.5), Value = ser.Mean[c], Error = ser.Std?[c] ?? 0, Size = slot * 0.9,
                FillColor = color,
            }).ToList();
            var plotted = plot.Add.Bars(bars);
            plotted.LegendText = ser.Name;
        }
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, categories.Count).Select(c => (double)c).ToArray(), categories.ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.Axes.SetLimitsX(-0.5, categories.Count - 0.5); // every group keeps its place, bars or not
        plot.Title(title);
        plot.YLabel(yLabel);
        plot.ShowLegend(Alignment.UpperRight);
        Save(plot, pngPath, width, height);
    }

    static void Save(Plot plot, string pngPath, int width, int height)
    {
        byte[] png = plot.GetImageBytes(width, height, ImageFormat.Png);
        AtomicFile.Write(pngPath, s => s.Write(png));
    }
}
