using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Inference;

/// <summary>A task loaded into a <see cref="MultiTaskEngine"/>: its prefix, head and labels.</summary>
public sealed class EngineTask : IDisposable
{
    public string Name { get; }
    public string[] Classes { get; }
    public Preprocessing Preprocessing { get; }
    /// <summary>fp32 prefixes, computed from the fp32 backbone.</summary>
    public TaskPrefix Prefix { get; }
    /// <summary>The task attached to the fp32 backbone; the engine uses only its head (method feature transform + linear).</summary>
    readonly PromptedModel model;

    internal EngineTask(string name, TaskArtifact artifact, PromptedModel model)
    {
        Name = name;
        Classes = artifact.Metadata.Classes;
        Preprocessing = artifact.Metadata.Preprocessing;
        this.model = model;
        Prefix = TaskPrefix.FromModel(model);
    }

    public int NumClasses => Classes.Length;

    /// <summary>Logits from fp32 pooled features.</summary>
    internal Tensor Head(Tensor features) => model.ForwardHead(features);

    public void Dispose()
    {
        Prefix.Dispose();
        model.Dispose(); // method + head only: the backbone is not a registered submodule
    }
}

/// <summary>
/// One frozen backbone serving many tasks at once. Each task is a per-block key/value prefix (<see cref="TaskPrefix"/>)
/// plus a head, so a batch mixing tasks needs one backbone pass: each sample attends to its own task's prefixes (padded to
/// the longest in the batch, the padding masked with −inf), then each sample goes through its own task's head. CPU only.
/// </summary>
public sealed class MultiTaskEngine : IDisposable
{
    readonly LoadedBackbone source;
    /// <summary>What runs: the shared fp32 backbone, or this engine's own low-precision copy of it.</summary>
    readonly VisionTransformer backbone;
    readonly bool ownsRunningBackbone;
    readonly List<EngineTask> tasks = [];
    /// <summary>Per block, every task's prefix padded to the longest: keys/values [tasks, heads, pmax, head_dim],
    /// mask [tasks, pmax]. Rebuilt after tasks are added.</summary>
    Tensor?[]? stackedKeys, stackedValues, stackedMasks;

    /// <summary>The dtype the backbone and the prefixes run in (float32 or bfloat16); heads always run in float32.</summary>
    public ScalarType BackboneDtype { get; }
    public IReadOnlyList<EngineTask> Tasks => tasks;
    public VitConfig Config => source.Config;

    /// <summary>Why the engine is ViT-only (the refusal on other families).</summary>
    public const string OnePassNeeds = "the one-pass multi-task engine (VPT-prefix) needs per-block attention keys/values, which only a ViT has";

    /// <summary>Whether <paramref name="backbone"/> can carry an engine (else every task runs through its own model).</summary>
    public static bool Supports(LoadedBackbone backbone) => backbone.Vit is { GlobalPool: false } && backbone.Model.Has(BackboneCapability.AttentionPrefix);

    /// <param name="backbone">The frozen backbone every task was trained on (not owned: the caller disposes it).</param>
    /// <param name="backboneDtype">float32, or bfloat16 to run the backbone in bf16 (an engine-owned copy).</param>
    public MultiTaskEngine(LoadedBackbone backbone, ScalarType backboneDtype = ScalarType.Float32)
    {
        if (backboneDtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"backbone dtype {backboneDtype}: use Float32 or BFloat16");
        var vit = backbone.Vit ?? throw backbone.NotAVit(OnePassNeeds);
        if (vit.GlobalPool)
            throw new InvalidSettingException("backbone", backbone.Source, "serving many tasks in one pass reads the final-norm class token; this backbone pools globally (MAE): evaluate its tasks one at a time");
        if (vit.cls_token.device_type != DeviceType.CPU)
            throw new ArgumentException("the multi-task engine runs on the CPU; load the backbone there");
        source = backbone;
        BackboneDtype = backboneDtype;
        if (backboneDtype == ScalarType.Float32) { this.backbone = vit; return; }
        this.backbone = CopyAs(vit, backboneDtype);
        ownsRunningBackbone = true;
    }

    static VisionTransformer CopyAs(VisionTransformer model, ScalarType dtype)
    {
        var rng = torch.get_rng_state(); // the copy's throwaway init must not shift the caller's random stream
        var copy = new VisionTransformer(model.Config);
        torch.set_rng_state(rng);
        using (no_grad())
        {
            var target = copy.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, p) in model.BackboneParameters()) target[name].copy_(p);
        }
        copy.to(dtype);
        copy.Freeze();
        return copy;
    }

    /// <summary>Loads a task (checking its backbone hash and that it is an exact prefix); returns its index.</summary>
    public int AddTask(TaskArtifact artifact, string name)
    {
        var model = artifact.Attach(source, name);
        try { tasks.Add(new EngineTask(name, artifact, model)); }
        catch { model.Dispose(); throw; }
        DisposeStacks();
        return tasks.Count - 1;
    }

    void BuildStacks()
    {
        if (stackedKeys is not null) return;
        int depth = Config.Depth, heads = Config.Heads, headDim = Config.Width / Config.Heads;
        stackedKeys = new Tensor?[depth];
        stackedValues = new Tensor?[depth];
        stackedMasks = new Tensor?[depth];
        using var _ = no_grad();
        for (int i = 0; i < depth; i++)
        {
            int pmax = tasks.Max(t => t.Prefix.LengthAt(i));
            if (pmax == 0) continue;
            var k = zeros(tasks.Count, heads, pmax, headDim, dtype: BackboneDtype);
            var v = zeros(tasks.Count, heads, pmax, headDim, dtype: BackboneDtype);
            var mask = full(tasks.Count, pmax, double.NegativeInfinity, dtype: BackboneDtype);
            for (int t = 0; t < tasks.Count; t++)
            {
                int p = tasks[t].Prefix.LengthAt(i);
                if (p == 0) continue;
                k[t, .., ..p] = tasks[t].Prefix.KeysAt(i)![0];
                v[t, .., ..p] = tasks[t].Prefix.ValuesAt(i)![0];
                mask[t, ..p] = 0.0;
            }
            // Built lazily inside a caller's dispose scope, but owned by the engine until Dispose or the next AddTask.
            (stackedKeys[i], stackedValues[i], stackedMasks[i]) = (k.DetachFromDisposeScope(), v.DetachFromDisposeScope(), mask.DetachFromDisposeScope());
        }
    }

    /// <summary>Per-sample prefixes of one batch, gathered from the stacks by task.</summary>
    sealed class BatchHooks(KeyValuePrefix?[] prefixes) : IBlockHooks
    {
        public Tensor BeforeBlock(int block, Tensor tokens) => tokens;
        public KeyValuePrefix? PrefixKeyValues(int block) => prefixes[block];
    }

    /// <summary>Final-norm CLS + patch tokens of one backbone pass, each sample with its task's prefixes (inside a scope).</summary>
    Tensor Tokens(Tensor images, int[] taskOfSample)
    {
        if (tasks.Count == 0) throw new InvalidOperationException("no tasks loaded; call AddTask first");
        if (images.dim() != 4 || images.shape[0] != taskOfSample.Length)
            throw new ArgumentException($"images [{string.Join(", ", images.shape)}] need one task index per sample ({taskOfSample.Length} given)");
        foreach (int t in taskOfSample)
            if (t < 0 || t >= tasks.Count) throw new ArgumentException($"task index {t} is not one of the {tasks.Count} loaded tasks");
        BuildStacks();
        var present = taskOfSample.Distinct().ToArray();
        var index = tensor(taskOfSample.Select(t => (long)t).ToArray());
        var prefixes = new KeyValuePrefix?[Config.Depth];
        for (int i = 0; i < Config.Depth; i++)
        {
            int longest = present.Max(t => tasks[t].Prefix.LengthAt(i));
            if (longest == 0) continue;
            bool padded = present.Any(t => tasks[t].Prefix.LengthAt(i) != longest);
            if (present.Length == 1) // one task: a [1, ...] prefix, broadcast over the batch by the attention
                prefixes[i] = new KeyValuePrefix(stackedKeys![i]!.narrow(0, present[0], 1).narrow(2, 0, longest),
                    stackedValues![i]!.narrow(0, present[0], 1).narrow(2, 0, longest));
            else
                prefixes[i] = new KeyValuePrefix(stackedKeys![i]!.index_select(0, index).narrow(2, 0, longest),
                    stackedValues![i]!.index_select(0, index).narrow(2, 0, longest),
                    padded ? stackedMasks![i]!.index_select(0, index).narrow(1, 0, longest) : null);
        }
        return backbone.ForwardFeatures(images.to(BackboneDtype), new BatchHooks(prefixes));
    }

    /// <summary>Float32 logits of the samples <paramref name="rows"/> of a token batch, all of task <paramref name="task"/>.</summary>
    Tensor Logits(Tensor tokens, int task, Tensor? rows)
    {
        var selected = rows is null ? tokens : tokens.index_select(0, rows);
        var features = TaskPrefix.Pool(selected, tasks[task].Prefix.Output).to(ScalarType.Float32);
        return tasks[task].Head(features);
    }

    /// <summary>
    /// One backbone pass over a batch mixing tasks: sample j is classified by task <c>taskOfSample[j]</c>. Returns one
    /// softmax vector per sample ([classes of its task], CPU float32), owned by the caller.
    /// </summary>
    public Tensor[] Predict(Tensor images, int[] taskOfSample)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var tokens = Tokens(images, taskOfSample);
        var result = new Tensor[taskOfSample.Length];
        foreach (var group in taskOfSample.Select((task, sample) => (task, sample)).GroupBy(s => s.task))
        {
            long[] samples = group.Select(s => (long)s.sample).ToArray();
            var probs = nn.functional.softmax(Logits(tokens, group.Key, tensor(samples)), 1);
            for (int j = 0; j < samples.Length; j++) result[samples[j]] = probs[j].clone().MoveToOuterDisposeScope();
        }
        return result;
    }

    /// <summary>
    /// A prompt ensemble (paper appendix B): the batch is replicated once per member, each copy with that member's
    /// prefixes, in one backbone pass; returns the mean of the members' softmax outputs [B, classes] (owned by the caller).
    /// The members must share their classes.
    /// </summary>
    public Tensor PredictEnsemble(Tensor images, IReadOnlyList<int> members)
    {
        if (members.Count == 0) throw new ArgumentException("an ensemble needs at least one member");
        foreach (int m in members)
            if (m < 0 || m >= tasks.Count) throw new ArgumentException($"task index {m} is not one of the {tasks.Count} loaded tasks");
        var classes = tasks[members[0]].Classes;
        foreach (int m in members)
            if (!tasks[m].Classes.SequenceEqual(classes))
                throw new ArgumentException($"ensemble members {tasks[members[0]].Name} and {tasks[m].Name} have different classes");
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        long b = images.shape[0];
        var replicated = images.repeat(members.Count, 1, 1, 1);
        var taskOfSample = members.SelectMany(m => Enumerable.Repeat(m, (int)b)).ToArray();
        var tokens = Tokens(replicated, taskOfSample);
        Tensor sum = zeros(b, classes.Length);
        for (int j = 0; j < members.Count; j++)
            sum = sum + nn.functional.softmax(Logits(tokens.narrow(0, j * b, b), members[j], null), 1);
        return (sum / members.Count).MoveToOuterDisposeScope();
    }

    void DisposeStacks()
    {
        foreach (var t in (stackedKeys ?? []).Concat(stackedValues ?? []).Concat(stackedMasks ?? [])) t?.Dispose();
        stackedKeys = stackedValues = stackedMasks = null;
    }

    public void Dispose()
    {
        DisposeStacks();
        foreach (var t in tasks) t.Dispose();
        tasks.Clear();
        if (ownsRunningBackbone) backbone.Dispose();
    }
}
