using TorchSharp;
using VptSharp.Hardware;

namespace VptSharp.Tuning;

/// <summary>Choosing and applying a <see cref="PromptedModel"/>'s backbone precision (see <see cref="PrecisionPolicy"/>).</summary>
public static class ModelPrecision
{
    /// <summary>True when no backbone weight trains, so the backbone may live in bfloat16 without a float32 copy.</summary>
    public static bool KeepsBackboneFrozen(this PromptedModel model) => !model.method.BackboneParametersToTrain(model.backbone).Any();

    /// <summary>Resolves <paramref name="requested"/> for this model on <paramref name="device"/> and casts the (shared)
    /// backbone once to the chosen dtype; returns the choice to print and record.</summary>
    public static PrecisionChoice ApplyPrecision(this PromptedModel model, Precision requested, DeviceType device = DeviceType.CPU,
        CpuFeatures? cpu = null)
    {
        var choice = PrecisionPolicy.Resolve(requested, model.KeepsBackboneFrozen(), device, cpu ?? CpuFeatures.Current,
            requested == Precision.Auto && device == DeviceType.CUDA ? ComputeDevice.GpuComputeCapability() : null);
        if (choice.Dtype != model.BackboneDtype) model.SetBackboneDtype(choice.Dtype);
        return choice;
    }
}
