using System.Text.Json;
using System.Text.Json.Serialization;

namespace VptSharp.IO;

/// <summary>
/// The JSON settings of every file VptSharp writes and reads, defined once. Files that people read are indented; that
/// is the only difference between <see cref="Options"/> and <see cref="Indented"/>. Which properties a file leaves out
/// (nulls, defaults) is declared on its record with <see cref="JsonIgnoreAttribute"/>, not by a separate options object.
/// </summary>
public static class JsonFormat
{
    /// <summary>snake_case names, kebab-case enum values, NaN/±Infinity as named literals (a diverged run's loss),
    /// comments skipped on read; one line (task-file metadata, method configs, metrics.jsonl).</summary>
    public static readonly JsonSerializerOptions Options = Frozen(new JsonSerializerOptions
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        ReadCommentHandling = JsonCommentHandling.Skip,
    });

    /// <summary><see cref="Options"/>, indented: sweep results, suites, reports.</summary>
    public static readonly JsonSerializerOptions Indented = Frozen(new JsonSerializerOptions(Options) { WriteIndented = true });

    /// <summary>
    /// .NET property names as they are (PascalCase), indented, named float literals: the format of benchmark, profile,
    /// demo and pretraining summaries and of a training run's train-state.json, kept because committed results, tests
    /// and resumable runs read those names.
    /// </summary>
    public static readonly JsonSerializerOptions PascalIndented = Frozen(new JsonSerializerOptions
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    });

    static JsonSerializerOptions Frozen(JsonSerializerOptions o)
    {
        o.MakeReadOnly(populateMissingResolver: true);
        return o;
    }
}
