using VptSharp.Backbones;
using static TorchSharp.torch;

namespace VptSharp.Training;

/// <summary>A copy of a backbone's tensors, to undo in-place training of shared backbone weights.</summary>
public sealed class BackboneSnapshot : IDisposable
{
    readonly Backbone model;
    readonly Dictionary<string, Tensor> saved;

    public BackboneSnapshot(Backbone model)
    {
        this.model = model;
        saved = model.BackboneParameters().ToDictionary(p => p.Name, p => p.Param.detach().clone());
    }

    public void Restore()
    {
        using var _ = no_grad();
        foreach (var (name, p) in model.BackboneParameters()) p.copy_(saved[name]);
        model.Freeze();
    }

    public void Dispose() { foreach (var t in saved.Values) t.Dispose(); }
}
