namespace VptSharp.Analysis;

/// <summary>t-SNE settings; the defaults are those of van der Maaten &amp; Hinton (2008).</summary>
public sealed record TsneOptions
{
    public double Perplexity { get; init; } = 30;
    public int Iterations { get; init; } = 1000;
    public double LearningRate { get; init; } = 200;
    public double EarlyExaggeration { get; init; } = 12;
    /// <summary>Iterations with exaggerated P and momentum 0.5; afterwards P is exact and momentum 0.8.</summary>
    public int ExaggerationIterations { get; init; } = 250;
    public int Seed { get; init; } = 0;
}

/// <summary>
/// Exact t-SNE (van der Maaten &amp; Hinton, JMLR 2008): Gaussian affinities calibrated to a perplexity by binary
/// search per point, symmetrised P, Student-t Q in 2-D, gradient descent with momentum and per-coordinate gains.
/// Cost is O(n²) time and memory per iteration (no Barnes-Hut approximation), so inputs are limited to
/// <see cref="MaxPoints"/> points. Deterministic for a fixed seed: parallel loops only split rows, and every sum
/// over rows is taken sequentially.
/// </summary>
public static class Tsne
{
    /// <summary>Largest input the exact O(n²) method accepts (P alone is n² doubles: 200 MB at 5,000).</summary>
    public const int MaxPoints = 5000;

    /// <summary>Embeds the rows of <paramref name="data"/> [n, D] in 2-D; returns [n, 2].</summary>
    public static double[,] Embed(float[,] data, TsneOptions? options = null)
    {
        var o = options ?? new TsneOptions();
        int n = data.GetLength(0), dim = data.GetLength(1);
        if (n < 2) throw new ArgumentException($"t-SNE needs at least 2 points, got {n}");
        if (n > MaxPoints) throw new ArgumentException($"t-SNE here is exact O(n²): at most {MaxPoints:N0} points, got {n:N0}; subsample first");
        if (!(o.Perplexity > 0) || o.Perplexity > n - 1)
            throw new ArgumentException($"t-SNE perplexity must be in (0, n - 1] = (0, {n - 1}], got {o.Perplexity}");
        if (o.Iterations < 1) throw new ArgumentException("t-SNE needs at least one iteration");
        for (int i = 0; i < n; i++)
            for (int k = 0; k < dim; k++)
                if (!float.IsFinite(data[i, k])) throw new ArgumentException($"t-SNE input row {i} has a non-finite value");

        var p = JointProbabilities(data, o.Perplexity);
        return Optimise(p, n, o);
    }

    /// <summary>Symmetrised affinities p_ij = (p_j|i + p_i|j) / 2n as a dense row-major n×n array.</summary>
    static double[] JointProbabilities(float[,] data, double perplexity)
    {
        int n = data.GetLength(0), dim = data.GetLength(1);
        var dist = new double[n * n];
        Parallel.For(0, n, i =>
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < dim; k++) { double d = data[i, k] - data[j, k]; s += d * d; }
                dist[i * n + j] = s;
            }
        });
        var conditional = new double[n * n];
        double targetEntropy = Math.Log(perplexity);
        Parallel.For(0, n, i => CalibrateRow(dist.AsSpan(i * n, n), i, targetEntropy, conditional.AsSpan(i * n, n)));
        var p = dist; // reuse the buffer: distances are no longer needed
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                p[i * n + j] = Math.Max((conditional[i * n + j] + conditional[j * n + i]) / (2.0 * n), 1e-12);
        for (int i = 0; i < n; i++) p[i * n + i] = 0;
        return p;
    }

    /// <summary>Finds the Gaussian precision β of point i whose conditional distribution has entropy log(perplexity),
    /// by bisection on β (doubling / halving until the target is bracketed).</summary>
    static void CalibrateRow(ReadOnlySpan<double> dist, int self, double targetEntropy, Span<double> row)
    {
        // Shifting distances by the nearest neighbour's leaves P unchanged and keeps exp() from underflowing.
        double nearest = double.PositiveInfinity;
        for (int j = 0; j < dist.Length; j++) if (j != self && dist[j] < nearest) nearest = dist[j];
        double beta = 1, lo = 0, hi = double.PositiveInfinity;
        for (int step = 0; step < 200; step++)
        {
            double sum = 0, weighted = 0;
            for (int j = 0; j < dist.Length; j++)
            {
                double v = j == self ? 0 : Math.Exp(-beta * (dist[j] - nearest));
                row[j] = v; sum += v; weighted += v * (dist[j] - nearest);
            }
            double entropy = Math.Log(sum) + beta * weighted / sum;
            for (int j = 0; j < row.Length; j++) row[j] /= sum;
            double diff = entropy - targetEntropy;
            if (Math.Abs(diff) < 1e-5) break;
            if (diff > 0) { lo = beta; beta = double.IsPositiveInfinity(hi) ? beta * 2 : (beta + hi) / 2; } // too flat: sharpen
            else { hi = beta; beta = (beta + lo) / 2; }
        }
    }

    static double[,] Optimise(double[] p, int n, TsneOptions o)
    {
        var rng = new Random(o.Seed);
        var y = new double[n * 2];
        for (int i = 0; i < y.Length; i++) y[i] = 1e-2 * Gaussian(rng); // N(0, 1e-4 I)
        var update = new double[n * 2];
        var gains = new double[n * 2];
        Array.Fill(gains, 1.0);
        var grad = new double[n * 2];
        var rowQ = new double[n];
        var attraction = new double[n * 2];
        var repulsion = new double[n * 2];

        for (int iter = 0; iter < o.Iterations; iter++)
        {
            bool early = iter < o.ExaggerationIterations;
            double exaggeration = early ? o.EarlyExaggeration : 1;
            double momentum = early ? 0.5 : 0.8;

            // ∂C/∂y_i = 4 Σ_j (p_ij − q_ij) w_ij (y_i − y_j) with w_ij = (1 + |y_i − y_j|²)⁻¹ and q_ij = w_ij / Z.
            // One pass per row gathers the attractive sum, the unnormalised repulsive sum Σ_j w_ij² (y_i − y_j) and
            // the row's share of Z; Z is then added up in a fixed order (determinism) and divides the repulsion.
            Parallel.For(0, n, i =>
            {
                double a0 = 0, a1 = 0, r0 = 0, r1 = 0, s = 0, yi0 = y[2 * i], yi1 = y[2 * i + 1];
                int rowStart = i * n;
                for (int j = 0; j < n; j++)
                {
                    if (j == i) continue;
                    double d0 = yi0 - y[2 * j], d1 = yi1 - y[2 * j + 1];
                    double w = 1 / (1 + d0 * d0 + d1 * d1);
                    double pw = p[rowStart + j] * w, ww = w * w;
                    a0 += pw * d0; a1 += pw * d1; r0 += ww * d0; r1 += ww * d1; s += w;
                }
                attraction[2 * i] = a0; attraction[2 * i + 1] = a1;
                repulsion[2 * i] = r0; repulsion[2 * i + 1] = r1;
                rowQ[i] = s;
            });
            double z = 0;
            for (int i = 0; i < n; i++) z += rowQ[i];
            for (int k = 0; k < grad.Length; k++) grad[k] = 4 * (exaggeration * attraction[k] - repulsion[k] / z);

            for (int k = 0; k < y.Length; k++)
            {
                // Delta-bar-delta: grow the gain while the gradient keeps opposing the last step's direction.
                gains[k] = Math.Sign(grad[k]) != Math.Sign(update[k]) ? gains[k] + 0.2 : Math.Max(gains[k] * 0.8, 0.01);
                update[k] = momentum * update[k] - o.LearningRate * gains[k] * grad[k];
                y[k] += update[k];
            }
            double c0 = 0, c1 = 0;
            for (int i = 0; i < n; i++) { c0 += y[2 * i]; c1 += y[2 * i + 1]; }
            c0 /= n; c1 /= n;
            for (int i = 0; i < n; i++) { y[2 * i] -= c0; y[2 * i + 1] -= c1; }
        }

        var result = new double[n, 2];
        for (int i = 0; i < n; i++) { result[i, 0] = y[2 * i]; result[i, 1] = y[2 * i + 1]; }
        return result;
    }

    static double Gaussian(Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}
