using MathNet.Numerics;
using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.Optimization;
using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Training;

/// <summary>
/// A linear head solved as multinomial logistic regression on cached features by full-batch L-BFGS with a line search
/// (MathNet's LimitedMemoryBfgsMinimizer): what scikit-learn's LogisticRegression, ML.NET's LbfgsMaximumEntropy and the
/// linear-probe evaluations of CLIP and DINO use. Minimises mean cross-entropy + (λ/2)·‖W'‖² in float64 over the features
/// or, optionally, standardised features (W' the weights on them; the bias is not penalised, as in the SGD recipe's groups);
/// λ is the run's weight decay, so a sweep's wd grid is the usual regularisation grid and its lr grid does not apply.
/// Each call continues from the head's current values, so a trainer's epochs are restarts of at most
/// <c>iterations</c> steps with validation in between.
/// </summary>
public static class LbfgsHead
{
    /// <summary>The minimiser proposed a non-finite point or value: it is past what float64 can resolve.</summary>
    sealed class SearchBrokeDown : Exception;

    /// <param name="standardize">Solve on standardised features (zero mean, unit variance per feature) instead of the
    /// features as they are.</param>
    /// <returns>The objective the solve minimises (mean cross-entropy + penalty; it never rises from one call to the next on
    /// the same data) and how many training features the solved head gets right.</returns>
    public static (double Objective, int Correct) Solve(PromptedModel model, Tensor features, Tensor labels, double l2, int iterations,
        bool standardize, double labelSmoothing = 0, string? outDir = null)
    {
        var head = model.head;
        long classes = head.weight!.shape[0], width = head.weight.shape[1];
        // Features as they are (CLIP's linear probe: scikit-learn's LogisticRegression on raw features; ML.NET's
        // LbfgsMaximumEntropy): the penalty shrinks the weak, noisy feature directions most. Standardised (scikit-learn's
        // StandardScaler first; MAE's probe puts a non-affine BatchNorm before its head): every feature weighs alike.
        // Either way the solution is folded back into the head, W = W'/σ and b = b' − (W'/σ)·μ: the task file is a plain head.
        using var f64 = features.to(ScalarType.Float64);
        using var mean = standardize ? f64.mean([0]) : zeros(f64.shape[1], dtype: ScalarType.Float64);
        using var std = standardize ? f64.std(0, unbiased: false).clamp_min(1e-6) : ones(f64.shape[1], dtype: ScalarType.Float64);
        using var x = (f64 - mean) / std;
        var best = (Value: double.PositiveInfinity, Point: (Vector<double>?)null);
        double startValue = double.NaN; // the objective at the head as it came in (the first point evaluated)
        using var halfL2 = (0.5 * l2).ToScalar(); // held for the whole solve: an implicit Scalar may be finalized mid-call (Scalars)

        (double, Vector<double>) LossAndGradient(Vector<double> v)
        {
            if (!v.All(double.IsFinite)) throw new SearchBrokeDown();
            using var scope = NewDisposeScope();
            var flat = tensor(v.ToArray(), ScalarType.Float64).requires_grad_(true);
            var w = flat.narrow(0, 0, classes * width).view(classes, width);
            var b = flat.narrow(0, classes * width, classes);
            var loss = nn.functional.cross_entropy(nn.functional.linear(x, w, b), labels, label_smoothing: labelSmoothing)
                .add(w.square().sum().mul(halfL2), Scalars.One);
            loss.backward();
            double value = loss.item<double>();
            if (!double.IsFinite(value))
                throw best.Point is null ? new TrainingDivergedException($"the L-BFGS head objective is {value} at the start (weight decay {l2:G3})", outDir) : new SearchBrokeDown();
            if (best.Point is null) startValue = value;
            if (value < best.Value) best = (value, v.Clone());
            return (value, Vector<double>.Build.DenseOfArray(flat.grad!.data<double>().ToArray()));
        }

        // The current head in the solve's coordinates: W' = W·σ, b' = b + W·μ.
        Vector<double> HeadPoint()
        {
            using var scope = NewDisposeScope();
            var w0 = head.weight.detach().to(ScalarType.Float64);
            var b0 = head.bias!.detach().to(ScalarType.Float64).add(w0.matmul(mean), Scalars.One);
            return Vector<double>.Build.DenseOfArray([.. (w0 * std).flatten().data<double>().ToArray(), .. b0.data<double>().ToArray()]);
        }
        var minimizer = new LimitedMemoryBfgsMinimizer(gradientTolerance: 1e-7, parameterTolerance: 1e-12, functionProgressTolerance: 1e-12,
            memory: 10, maximumIterations: iterations);
        using var startWeight = head.weight.detach().clone();
        using var startBias = head.bias!.detach().clone();
        try { minimizer.FindMinimum(ObjectiveFunction.Gradient(LossAndGradient), HeadPoint()); }
        catch (Exception e) when (e is MaximumIterationsException or SearchBrokeDown or InnerOptimizationException or NumericalBreakdownException
                                  && best.Point is not null)
        {
            // the epoch's budget ran out, or the line search hit float64's floor
        }
        var solution = best.Point!; // the lowest point evaluated

        using (no_grad())
        {
            var values = solution.ToArray();
            using var scope = NewDisposeScope();
            var w = tensor(values[..(int)(classes * width)], [classes, width], ScalarType.Float64) / std;
            var b = tensor(values[(int)(classes * width)..], ScalarType.Float64).sub(w.matmul(mean));
            head.weight.copy_(w);
            head.bias!.copy_(b);
        }
        // The objective returned is the head's as stored. Its float32 rounding can sit a hair above the float64 point found,
        // even above where the solve started once it has converged; then the head goes back to where it came in. The next
        // call starts from exactly this head and evaluates it first, the same way, so the values never rise.
        double objective;
        try { (objective, _) = LossAndGradient(HeadPoint()); }
        catch (SearchBrokeDown) { objective = double.PositiveInfinity; }
        if (!(objective <= startValue))
        {
            using var _ = no_grad();
            head.weight.copy_(startWeight);
            head.bias!.copy_(startBias);
            objective = startValue;
        }
        using var __ = no_grad();
        using var scope2 = NewDisposeScope();
        var logits = model.ForwardHead(features);
        return (objective, (int)logits.argmax(1).eq(labels).sum().item<long>());
    }
}
