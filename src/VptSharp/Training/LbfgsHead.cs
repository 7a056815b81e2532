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
/// linear-probe evaluations of CLIP and DINO use. Minimises mean cross-entropy + (λ/2)·‖W'‖² in float64 over standardised
/// features (W' the weights on them; the bias is not penalised, as in the SGD recipe's groups); λ is the run's weight decay, so a sweep's wd grid is the usual
/// regularisation grid and its lr grid does not apply. Each call continues from the head's current values, so a
/// trainer's epochs are restarts of at most <c>iterations</c> steps with validation in between.
/// </summary>
public static class LbfgsHead
{
    /// <summary>The minimiser proposed a non-finite point or value: it is past what float64 can resolve.</summary>
    sealed class SearchBrokeDown : Exception;

    /// <returns>The training loss (without the penalty) and how many training features the solved head gets right.</returns>
    public static (double Loss, int Correct) Solve(PromptedModel model, Tensor features, Tensor labels, double l2, int iterations,
        double labelSmoothing = 0, string? outDir = null)
    {
        var head = model.head;
        long classes = head.weight!.shape[0], width = head.weight.shape[1];
        // Solved on standardised features (scikit-learn's StandardScaler + LogisticRegression; MAE's linear probe puts a
        // non-affine BatchNorm before its head): the penalty then weighs every feature alike, whatever its scale.
        // The solution is folded back into the head, W = W'/σ and b = b' − (W'/σ)·μ, so the task file is a plain head.
        using var raw = features.to(ScalarType.Float64);
        using var mean = raw.mean([0]);
        using var std = raw.std(0, unbiased: false).clamp_min(1e-6);
        using var x = (raw - mean) / std;
        var best = (Value: double.PositiveInfinity, Point: (Vector<double>?)null);
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
            if (value < best.Value) best = (value, v.Clone());
            return (value, Vector<double>.Build.DenseOfArray(flat.grad!.data<double>().ToArray()));
        }

        Vector<double> start; // the current head in standardised coordinates: W' = W·σ, b' = b + W·μ
        using (var scope = NewDisposeScope())
        {
            var w0 = head.weight.detach().to(ScalarType.Float64);
            var b0 = head.bias!.detach().to(ScalarType.Float64).add(w0.matmul(mean), Scalars.One);
            start = Vector<double>.Build.DenseOfArray([.. (w0 * std).flatten().data<double>().ToArray(), .. b0.data<double>().ToArray()]);
        }
        var minimizer = new LimitedMemoryBfgsMinimizer(gradientTolerance: 1e-7, parameterTolerance: 1e-12, functionProgressTolerance: 1e-12,
            memory: 10, maximumIterations: iterations);
        Vector<double> solution;
        try { solution = minimizer.FindMinimum(ObjectiveFunction.Gradient(LossAndGradient), start).MinimizingPoint; }
        catch (Exception e) when (e is MaximumIterationsException or SearchBrokeDown or InnerOptimizationException or NumericalBreakdownException
                                  && best.Point is not null)
        {
            solution = best.Point!; // the epoch's budget ran out, or the line search hit float64's floor: the lowest point seen
        }

        using (no_grad())
        {
            var values = solution.ToArray();
            using var scope = NewDisposeScope();
            var w = tensor(values[..(int)(classes * width)], [classes, width], ScalarType.Float64) / std;
            var b = tensor(values[(int)(classes * width)..], ScalarType.Float64).sub(w.matmul(mean));
            head.weight.copy_(w);
            head.bias!.copy_(b);
        }
        using var __ = no_grad();
        using var scope2 = NewDisposeScope();
        var logits = model.ForwardHead(features);
        var trainLoss = nn.functional.cross_entropy(logits, labels, label_smoothing: labelSmoothing).item<float>();
        return (trainLoss, (int)logits.argmax(1).eq(labels).sum().item<long>());
    }
}
