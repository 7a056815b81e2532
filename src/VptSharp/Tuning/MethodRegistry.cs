using VptSharp.IO;
using System.Text.Json;

namespace VptSharp.Tuning;

/// <summary>Name → method: what `vpt methods` lists and how task files find their method again.</summary>
public static class MethodRegistry
{
    /// <summary>A method as `vpt methods` lists it and the sweep grids it: its name, what it does, its trainable-parameter
    /// formula, its config type (for task files), how `vpt train`'s options make its config, and the grid axes it has
    /// besides learning rate and weight decay.</summary>
    public sealed record Entry(string Name, string Description, string ParameterFormula, Type ConfigType,
        Func<MethodOptions, MethodConfig> FromOptions, IReadOnlyList<SweepAxis>? SweepAxes = null)
    {
        public IReadOnlyList<SweepAxis> SweepAxes { get; } = SweepAxes ?? [];
    }

    static readonly Dictionary<string, Entry> entries = new(StringComparer.OrdinalIgnoreCase);

    static MethodRegistry()
    {
        // One line per method; each method's file says what it is (Entry / Entries).
        foreach (var e in PromptConfig.Entries) Register(e);
        Register(ClsLearnedConfig.Entry);
        Register(FullConfig.Entry);
        Register(LinearProbeConfig.Entry);
        Register(PartialConfig.Entry);
        Register(MlpHeadConfig.Entry);
        Register(SidetuneConfig.Entry);
        Register(BiasConfig.Entry);
        Register(AdapterConfig.Entry);
        Register(PadPromptConfig.Entry);
    }

    public static void Register(Entry e) => entries[e.Name] = e;
    public static IReadOnlyCollection<Entry> All => entries.Values;

    public static Entry Get(string name) => entries.TryGetValue(name, out var e) ? e
        : throw new ArgumentException($"unknown method '{name}'; the methods are {string.Join(", ", entries.Keys)}");

    /// <summary>The entry of a method name, accepting "partial-2" / "mlp-3" for the "-k" families; k is returned apart.</summary>
    public static (Entry Entry, int? K) Resolve(string name)
    {
        var m = System.Text.RegularExpressions.Regex.Match(name, @"^([a-z]+)-(\d+)$");
        if (!entries.ContainsKey(name) && m.Success && entries.TryGetValue(m.Groups[1].Value + "-k", out var family)
            && int.TryParse(m.Groups[2].Value, out int k))
            return (family, k);
        return (Get(name), null);
    }

    public static MethodConfig FromOptions(string name, MethodOptions options)
    {
        var (entry, k) = Resolve(name);
        return entry.FromOptions(k is int n ? options with { K = n } : options);
    }

    public static string ToJson(MethodConfig c) => JsonSerializer.Serialize(c, c.GetType(), JsonFormat.Options);

    public static MethodConfig FromJson(string name, string json) =>
        (MethodConfig)(JsonSerializer.Deserialize(json, Get(name).ConfigType, JsonFormat.Options)
            ?? throw new ArgumentException($"empty config for method {name}"));
}

/// <summary>Grid axes a method adds to the sweep's learning rate × weight decay (paper appendix A).</summary>
public enum SweepAxis
{
    /// <summary>Prompt length p.</summary>
    PromptLength,
    /// <summary>Adapter reduction r.</summary>
    Reduction,
    /// <summary>Pad-prompt width in pixels per side (VPT-pad on ConvNets; paper grid 1, 3, 5, 7, 9, 11): a grid of its own,
    /// so one sweep can search token counts for ViT prompts and pixel widths for pad prompts.</summary>
    PadPixels,
    /// <summary>Which blocks get prompts: the depth curve (paper Fig. 7) after selection, not a tuning axis.</summary>
    PromptDepth,
}
