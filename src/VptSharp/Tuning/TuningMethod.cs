using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp;
using VptSharp.Backbones;
using static TorchSharp.torch;

namespace VptSharp.Tuning;

/// <summary>
/// A tuning method's settings. A method is a small config record + the module it adds (<see cref="TuningMethod"/>)
/// + how that module attaches (block hooks) + which parameters train. Configs round-trip through JSON in task files.
/// </summary>
public abstract record MethodConfig
{
    [JsonIgnore] public abstract string Method { get; }
    public abstract TuningMethod Create(VitConfig vit);

    /// <summary>True when every backbone weight trains: such methods default to AdamW (as the reference does for end-to-end
    /// fine-tuning) and their task file is necessarily a whole model.</summary>
    [JsonIgnore] public virtual bool TrainsWholeBackbone => false;
}

/// <summary>
/// The module a method adds to a frozen backbone. It owns its trainable tensors, attaches through
/// <see cref="IBlockHooks"/>, and names the backbone parameters (if any) that it unfreezes — explicitly, never by
/// matching parameter names.
/// </summary>
public abstract class TuningMethod(string name) : nn.Module(name), IBlockHooks
{
    public abstract MethodConfig Config { get; }

    /// <summary>Input-level hook: images → the token sequence entering block 1 (patch + CLS + position embedding by
    /// default). Pixel-space prompt locations change the input here, through the frozen patch embedding.</summary>
    public virtual Tensor Embed(VisionTransformer backbone, Tensor images) => backbone.Embed(images);

    public virtual Tensor BeforeBlock(int block, Tensor tokens) => tokens;

    public virtual Tensor AfterMlp(int block, Tensor mlpOutput) => mlpOutput;

    public virtual Tensor? KeyValueTokens(int block, long batch) => null;

    /// <summary>The feature the head sees, from the final-norm token sequence: the CLS token unless the method says otherwise.</summary>
    public virtual Tensor Pool(Tensor tokens) => tokens.select(1, 0);

    /// <summary>Blends the pooled backbone feature with anything computed from the images themselves (a side network).</summary>
    public virtual Tensor CombineFeatures(Tensor pooled, Tensor images) => pooled;

    /// <summary>Transforms the pooled feature before the linear head (an MLP head's hidden layers).</summary>
    public virtual Tensor ProcessFeatures(Tensor pooled) => pooled;

    /// <summary>Tokens the method adds after CLS (prompt tokens), so heads can tell image tokens apart.</summary>
    public virtual int ExtraTokens => 0;

    /// <summary>The method's own parameters that train (default: all of them; prompt-fixed keeps its prompts frozen).</summary>
    public virtual IEnumerable<(string Name, TorchSharp.Modules.Parameter Param)> OwnTrainableParameters() =>
        named_parameters().Select(p => (p.name, p.parameter));

    /// <summary>Backbone parameters this method trains (none for prompt methods and linear probing).</summary>
    public virtual IEnumerable<(string Name, TorchSharp.Modules.Parameter Param)> BackboneParametersToTrain(VisionTransformer backbone) => [];

    /// <summary>True when the method adds nothing the backbone's features depend on, so frozen features may be cached.</summary>
    public virtual bool FeaturesAreFrozen => false;
}

/// <summary>Name → method: what `vpt methods` lists and how task files find their method again.</summary>
public static class MethodRegistry
{
    public sealed record Entry(string Name, string Description, string ParameterFormula, Type ConfigType, Func<MethodOptions, MethodConfig> FromOptions);

    static readonly Dictionary<string, Entry> entries = new(StringComparer.OrdinalIgnoreCase);

    static MethodRegistry()
    {
        Register(new Entry("vpt-shallow", "p prompt tokens inserted once, before the first block (VPT-shallow, paper §3.2)",
            "p·d  (+ head d·C + C)", typeof(PromptConfig), o => PromptConfig.FromOptions(o, deep: false)));
        Register(new Entry("vpt-deep", "p prompt tokens per block, replacing the previous block's prompt outputs (VPT-deep)",
            "L·p·d  (+ head d·C + C)", typeof(PromptConfig), o => PromptConfig.FromOptions(o, deep: true)));
        Register(new Entry("prompt+bias", "VPT-deep prompts plus every backbone bias (paper appendix, Table 9)",
            "L·p·d + d + 11·L·d + d  (+ head)", typeof(PromptConfig), o => PromptConfig.FromOptions(o, deep: true) with { TrainBiases = true }));
        Register(new Entry("prompt-fixed", "VPT-deep prompts kept at their random init; only the head trains (ablation)",
            "0 (prompts stored, not trained)  (+ head)", typeof(PromptConfig), o => PromptConfig.FromOptions(o, deep: true) with { Fixed = true }));
        Register(new Entry("cls-learned", "only the backbone's CLS token (+ head) trains (ablation)",
            "d  (+ head)", typeof(ClsLearnedConfig), _ => new ClsLearnedConfig()));
        Register(new Entry("full", "full fine-tuning: every backbone parameter and the head train (task file holds the whole model)",
            "all backbone parameters  (+ head d·C + C)", typeof(FullConfig), _ => new FullConfig()));
        Register(new Entry("linear", "frozen backbone, linear head on the CLS feature (features cached once)",
            "0  (+ head d·C + C)", typeof(LinearProbeConfig), _ => new LinearProbeConfig()));
        Register(new Entry("partial-k", "the last k blocks and the final norm train (partial-1, partial-2, partial-4, ...)",
            "k·(12d² + 13d) + 2d  (+ head)", typeof(PartialConfig), o => new PartialConfig { Blocks = o.K ?? 1 }));
        Register(new Entry("mlp-k", "frozen backbone, k-layer MLP head (k−1 hidden layers of width d, ReLU) on the CLS feature",
            "(k−1)·(d² + d)  (+ head)", typeof(MlpHeadConfig), o => new MlpHeadConfig { Layers = o.K ?? 3 }));
        Register(new Entry("sidetune", "side-tuning: a small conv side network's feature blended with the frozen backbone's, α·backbone + (1−α)·side, α learned",
            "9·(3c + 42c²) + 15c + 8c·d + d + 1, c = side width 16  (+ head)", typeof(SidetuneConfig), o => new SidetuneConfig { Width = o.SideWidth ?? 16 }));
        Register(new Entry("bias", "only the backbone's bias terms train (BitFit / TinyTL-bias)",
            "d + 11·L·d + d  (+ head)", typeof(BiasConfig), _ => new BiasConfig()));
        Register(new Entry("adapter", "bottleneck adapter (d→d/r, GELU, d/r→d, zero-init up) on every block's MLP output, added before the residual",
            "L·(2d²/r + d/r + d)  (+ head)", typeof(AdapterConfig), o => new AdapterConfig { Reduction = o.Reduction ?? 8 }));
    }

    public static void Register(Entry e) => entries[e.Name] = e;
    public static IReadOnlyCollection<Entry> All => entries.Values;

    public static Entry Get(string name) => entries.TryGetValue(name, out var e) ? e
        : throw new ArgumentException($"unknown method '{name}'; run 'vpt methods' to list them ({string.Join(", ", entries.Keys)})");

    /// <summary>Accepts "partial-2" / "mlp-3" for the "-k" families by moving the number into the options.</summary>
    public static MethodConfig FromOptions(string name, MethodOptions options)
    {
        var m = System.Text.RegularExpressions.Regex.Match(name, @"^([a-z]+)-(\d+)$");
        if (!entries.ContainsKey(name) && m.Success && entries.ContainsKey(m.Groups[1].Value + "-k"))
            return Get(m.Groups[1].Value + "-k").FromOptions(options with { K = int.Parse(m.Groups[2].Value) });
        return Get(name).FromOptions(options);
    }

    public static string ToJson(MethodConfig c) => JsonSerializer.Serialize(c, c.GetType(), Json.Options);

    public static MethodConfig FromJson(string name, string json) =>
        (MethodConfig)(JsonSerializer.Deserialize(json, Get(name).ConfigType, Json.Options)
            ?? throw new ArgumentException($"empty config for method {name}"));
}

/// <summary>The method flags of `vpt train`; each method reads what concerns it.</summary>
public sealed record MethodOptions
{
    public int Prompts { get; init; } = 50;
    public double? PromptDropout { get; init; }
    public int ProjectDim { get; init; } = -1;
    /// <summary>k of partial-k / mlp-k.</summary>
    public int? K { get; init; }
    /// <summary>Adapter reduction factor r.</summary>
    public int? Reduction { get; init; }
    public PromptOutput PromptOutput { get; init; } = PromptOutput.Cls;
    public PromptSharing PromptSharing { get; init; } = PromptSharing.None;
    public PromptLocation PromptLocation { get; init; } = PromptLocation.Prepend;
    public PromptInit PromptInit { get; init; } = PromptInit.Random;
    /// <summary>Sidetune: channels of the side network's first conv stage.</summary>
    public int? SideWidth { get; init; }
    /// <summary>VPT-deep prompted blocks, 1-based inclusive (either order).</summary>
    public (int First, int Last)? PromptDepth { get; init; }
    /// <summary>VPT-deep trained and run in its exact key/value prefix form (<see cref="PromptConfig.PrefixForm"/>).</summary>
    public bool PrefixForm { get; init; }
}

internal static class Json
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = false,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };
}
