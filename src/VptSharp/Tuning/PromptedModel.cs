using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

/// <summary>
/// A frozen backbone + one tuning method + a linear classification head on the final-LayerNorm CLS output.
/// Only <see cref="TrainableParameters"/> receive gradients; the backbone stays in eval mode while training.
/// </summary>
public sealed class PromptedModel : Module<Tensor, Tensor>
{
    public readonly Backbone backbone;
    public readonly TuningMethod method;
    public readonly Linear head;

    public PromptedModel(Backbone backbone, TuningMethod method, int numClasses) : base("PromptedModel")
    {
        if (numClasses < 1) throw new ArgumentException("a task needs at least one class");
        this.backbone = backbone;
        this.method = method;
        head = Linear(backbone.NumFeatures, numClasses);
        HeadInit.Classifier(head); // the reference's head init (src/models/mlp.py)
        // The backbone is shared (one frozen backbone, many tasks) and owned by its loader: it is deliberately not a
        // registered submodule, so disposing or saving this model never touches it.
        register_module("method", method);
        register_module("head", head);
        SelectTrainable();
    }

    /// <summary>Moves the method, head and (shared) backbone to a device.</summary>
    public PromptedModel MoveTo(Device device)
    {
        backbone.to(device);
        this.to(device);
        return this;
    }

    /// <summary>Attaches the method to the backbone (refused when the backbone lacks a capability the method needs).</summary>
    public static PromptedModel Create(Backbone backbone, MethodConfig config, int numClasses)
    {
        MethodLimits.Check(config, backbone, numClasses); // sizes from flags or files are bounded before anything is allocated
        return new(backbone, config.Attach(backbone), numClasses);
    }

    public int NumClasses => (int)head.weight!.shape[0];

    /// <summary>Method + head parameters, then any backbone parameters the method unfreezes.</summary>
    public IReadOnlyList<(string Name, Parameter Param)> TrainableParameters() =>
        method.OwnTrainableParameters().Select(p => ("method." + p.Name, p.Param))
            .Concat(head.named_parameters().Select(p => ("head." + p.name, p.parameter)))
            .Concat(method.BackboneParametersToTrain(backbone).Select(p => ("backbone." + p.Name, p.Param)))
            .ToList();

    /// <summary>What a task file stores: the trainable tensors plus every tensor of the method (frozen prompts included).</summary>
    public IReadOnlyList<(string Name, Parameter Param)> TaskTensors() =>
        TrainableParameters().Concat(method.named_parameters().Select(p => ("method." + p.name, p.parameter)))
            .DistinctBy(p => p.Item1).ToList();

    /// <summary>Sets requires_grad from an explicit list: trainable parameters on, every other backbone tensor off.</summary>
    public void SelectTrainable()
    {
        foreach (var p in backbone.parameters()) p.requires_grad = false;
        foreach (var p in method.parameters()) p.requires_grad = false;
        foreach (var (_, p) in TrainableParameters()) p.requires_grad = true;
    }

    public long TrainableCount => TrainableParameters().Sum(p => p.Param.numel());
    public long MethodCount => TrainableCount - head.parameters().Sum(p => p.numel());

    /// <summary>Training mode for the method and head; the frozen backbone keeps eval behaviour (reference recipe).</summary>
    public override void train(bool on = true)
    {
        base.train(on);
        backbone.train(on && method.BackboneParametersToTrain(backbone).Any());
    }

    /// <summary>The dtype the frozen backbone computes in (float32 unless <see cref="SetBackboneDtype"/> changed it).</summary>
    public ScalarType BackboneDtype => backbone.Dtype;

    /// <summary>
    /// Runs the frozen backbone in <paramref name="dtype"/> — bfloat16 halves its memory and is fast on GPUs and on CPUs
    /// with avx512_bf16 — while the method's tensors and the head stay float32, cast at the seams; gradients reach the
    /// float32 tensors through those casts. A frozen backbone needs no float32 master copy, so methods that train backbone
    /// parameters are refused. The backbone is shared: every model on it sees the change.
    /// </summary>
    public void SetBackboneDtype(ScalarType dtype)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"backbone dtype {dtype}: use float32 or bfloat16");
        if (dtype != ScalarType.Float32 && method.BackboneParametersToTrain(backbone).Any())
            throw new InvalidSettingException("precision", "bf16", $"keeps the frozen backbone in bfloat16 with no float32 copy, but {method.Config.Method} trains backbone parameters, which need one; train it in fp32");
        backbone.to(dtype);
        SelectTrainable(); // converted parameters are new tensors: freeze them again
    }

    /// <summary>The backbone's final features with the method attached (ViT: the final-norm sequence [B, 1 + extra + N, d]).</summary>
    public Tensor ForwardFeatures(Tensor images)
    {
        using var input = images.to(BackboneDtype);
        using var emb = method.Embed(backbone, input);
        return backbone.ForwardBlocks(emb, method);
    }

    /// <summary>The pooled feature the head sees (the backbone's pooling unless the method pools otherwise): [B, d].</summary>
    public Tensor Features(Tensor images)
    {
        using var scope = NewDisposeScope();
        var features = ForwardFeatures(images);
        // The head side (side networks, MLP heads, the linear head) is float32 whatever the backbone computes in.
        return method.CombineFeatures(method.Pool(backbone, features).to(ScalarType.Float32), images).clone().MoveToOuterDisposeScope();
    }

    /// <summary>Head on a pooled feature (through the method's feature transform, e.g. an MLP head's hidden layers).</summary>
    public Tensor ForwardHead(Tensor features)
    {
        var f = method.ProcessFeatures(features);
        try { return head.forward(f); }
        finally { if (!ReferenceEquals(f, features)) f.Dispose(); } // most methods pass the caller's tensor through
    }

    public override Tensor forward(Tensor images)
    {
        using var f = Features(images);
        return ForwardHead(f);
    }
}
