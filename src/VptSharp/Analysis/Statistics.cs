using MathNet.Numerics.Distributions;

namespace VptSharp.Analysis;

/// <summary>Which difference a test looks for: x ≠ y (two-sided), x &gt; y ("greater", the paper's one-tailed tests of
/// VPT-deep against each method) or x &lt; y ("less"). Same meaning as SciPy's <c>alternative</c>.</summary>
public enum Alternative { TwoSided, Greater, Less }

/// <summary>Result of a Wilcoxon signed-rank test: statistic min(W+, W−) when two-sided, else W+ (as SciPy), the
/// p-value, and the number of non-zero differences that were ranked.</summary>
public sealed record WilcoxonResult(double Statistic, double PValue, int N, bool Exact);

/// <summary>Result of Welch's unequal-variance t-test.</summary>
public sealed record WelchResult(double T, double DegreesOfFreedom, double PValue);

/// <summary>
/// Small-sample statistics for comparing runs (e.g. per-task accuracies of two methods, or seeds).
/// Results match SciPy 1.10 (<c>scipy.stats.wilcoxon</c>, <c>scipy.stats.ttest_ind(equal_var=False)</c>);
/// tools/stats_reference.py prints the reference values the tests pin.
/// </summary>
public static class Statistics
{
    /// <summary>Mean and sample standard deviation (ddof = 1); the deviation is 0 for a single value.</summary>
    public static (double Mean, double Std) MeanStd(IReadOnlyList<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("MeanStd needs at least one value");
        double mean = 0;
        foreach (var v in values) mean += v;
        mean /= values.Count;
        if (values.Count == 1) return (mean, 0);
        double ss = 0;
        foreach (var v in values) ss += (v - mean) * (v - mean);
        return (mean, Math.Sqrt(ss / (values.Count - 1)));
    }

    /// <summary>
    /// Two-sided Wilcoxon signed-rank test of paired samples, with SciPy 1.10's defaults (zero_method "wilcox",
    /// no continuity correction, mode "auto"):
    /// <list type="bullet">
    /// <item>the exact null distribution is used when there are at most 50 pairs (counted before zero differences
    /// are dropped) and no difference is zero; otherwise the normal approximation with the tie correction;</item>
    /// <item>zero differences are dropped before ranking; N is the number of pairs left;</item>
    /// <item>like SciPy 1.10, ties among |differences| do not switch to the approximation: the exact distribution is
    /// used with W+ truncated to an integer (SciPy ≥ 1.11 changed this; this method pins 1.10).</item>
    /// </list>
    /// </summary>
    public static WilcoxonResult WilcoxonSignedRank(IReadOnlyList<double> x, IReadOnlyList<double> y, Alternative alternative = Alternative.TwoSided)
    {
        if (x.Count != y.Count) throw new ArgumentException($"Wilcoxon: paired samples must have the same length ({x.Count} vs {y.Count})");
        if (x.Count == 0) return new WilcoxonResult(double.NaN, double.NaN, 0, false);
        var allDiffs = new double[x.Count];
        for (int i = 0; i < x.Count; i++) allDiffs[i] = x[i] - y[i];
        bool hasZero = allDiffs.Any(d => d == 0);
        bool exact = allDiffs.Length <= 50 && !hasZero;
        var diffs = allDiffs.Where(d => d != 0).ToArray();
        if (diffs.Length == 0) throw new ArgumentException("Wilcoxon: every difference x - y is zero");

        int n = diffs.Length;
        var (ranks, tieSizes) = AverageRanks(diffs.Select(Math.Abs).ToArray());
        double wPlus = 0, wMinus = 0;
        for (int i = 0; i < n; i++)
            if (diffs[i] > 0) wPlus += ranks[i]; else wMinus += ranks[i];
        double statistic = alternative == Alternative.TwoSided ? Math.Min(wPlus, wMinus) : wPlus;

        if (exact) return new WilcoxonResult(statistic, ExactP(n, (int)wPlus, alternative), n, true);

        double mean = n * (n + 1) / 4.0;
        double variance = n * (n + 1.0) * (2.0 * n + 1.0);
        foreach (int t in tieSizes) variance -= 0.5 * t * ((double)t * t - 1);
        double z = (statistic - mean) / Math.Sqrt(variance / 24);
        double p = alternative switch
        {
            Alternative.Greater => Normal.CDF(0, 1, -z),
            Alternative.Less => Normal.CDF(0, 1, z),
            _ => 2 * Normal.CDF(0, 1, -Math.Abs(z)),
        };
        return new WilcoxonResult(statistic, p, n, false);
    }

    /// <summary>Average (mid) ranks of the values, 1-based, and the sizes of the tie groups (size ≥ 2).</summary>
    static (double[] Ranks, List<int> TieSizes) AverageRanks(double[] values)
    {
        var order = Enumerable.Range(0, values.Length).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Length];
        var ties = new List<int>();
        for (int start = 0; start < order.Length;)
        {
            int end = start;
            while (end + 1 < order.Length && values[order[end + 1]] == values[order[start]]) end++;
            double mid = (start + end) / 2.0 + 1; // ranks start..end (0-based) share their mean
            for (int k = start; k <= end; k++) ranks[order[k]] = mid;
            if (end > start) ties.Add(end - start + 1);
            start = end + 1;
        }
        return (ranks, ties);
    }

    /// <summary>Exact p-value of W+ = <paramref name="wPlus"/> among n ranks: the null distribution counts the subsets
    /// of {1..n} with each sum (dynamic programming over ranks). One-sided: P(W+ ≥ w) ("greater") or P(W+ ≤ w) ("less").</summary>
    static double ExactP(int n, int wPlus, Alternative alternative)
    {
        int maxSum = n * (n + 1) / 2;
        var counts = new double[maxSum + 1]; // ≤ 2^50 for n ≤ 50: exact in a double
        counts[0] = 1;
        for (int rank = 1; rank <= n; rank++)
            for (int s = rank * (rank + 1) / 2; s >= rank; s--) counts[s] += counts[s - rank];
        double total = Math.Pow(2, n), lower = 0, upper = 0;
        for (int s = 0; s <= wPlus; s++) lower += counts[s];
        for (int s = wPlus; s <= maxSum; s++) upper += counts[s];
        if (alternative == Alternative.Greater) return upper / total;
        if (alternative == Alternative.Less) return lower / total;
        if (wPlus == maxSum / 2) return 1.0; // the centre of the (symmetric) distribution
        return Math.Clamp(2 * Math.Min(lower, upper) / total, 0, 1);
    }

    /// <summary>
    /// Welch's two-sided t-test (unequal variances), as <c>scipy.stats.ttest_ind(a, b, equal_var=False)</c>.
    /// When both groups have zero variance the t statistic is undefined: with equal means T and PValue are NaN
    /// (SciPy: nan, nan); with different means T is ±∞ and PValue 0 (SciPy: ±inf, 0.0). DegreesOfFreedom is NaN
    /// in both cases.
    /// </summary>
    public static WelchResult WelchTTest(IReadOnlyList<double> a, IReadOnlyList<double> b, Alternative alternative = Alternative.TwoSided)
    {
        if (a.Count < 2 || b.Count < 2) throw new ArgumentException($"Welch t-test needs at least 2 values per group ({a.Count} and {b.Count})");
        var (ma, sa) = MeanStd(a);
        var (mb, sb) = MeanStd(b);
        double va = sa * sa / a.Count, vb = sb * sb / b.Count;
        double t = (ma - mb) / Math.Sqrt(va + vb);
        if (va + vb == 0)
        {
            if (ma == mb) return new WelchResult(double.NaN, double.NaN, double.NaN);
            bool agrees = alternative == Alternative.TwoSided || (alternative == Alternative.Greater) == (t > 0);
            return new WelchResult(t, double.NaN, agrees ? 0 : 1);
        }
        double df = (va + vb) * (va + vb) / (va * va / (a.Count - 1) + vb * vb / (b.Count - 1));
        double p = alternative switch
        {
            Alternative.Greater => StudentT.CDF(0, 1, df, -t),
            Alternative.Less => StudentT.CDF(0, 1, df, t),
            _ => 2 * StudentT.CDF(0, 1, df, -Math.Abs(t)),
        };
        return new WelchResult(t, df, p);
    }
}
