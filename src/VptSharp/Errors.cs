namespace VptSharp;

// Every exception the library throws on purpose. Messages state the fact (which file, which value, what is wrong)
// in the library's own terms; they never name a CLI flag. The CLI (Cli/ErrorMessages.cs) maps each type and its
// Setting to the flag and the fix, so a library user reads the fact and a CLI user reads the fact plus the flag.

/// <summary>
/// Base of the library's exceptions. <see cref="Setting"/> names the setting the fact is about, in the library's
/// kebab-case terms (e.g. "image-size", "base-lr", "tasks-folder"); front ends map it to how their user sets it.
/// </summary>
public abstract class VptException(string message, string? setting = null, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The setting whose value led here (null = none in particular).</summary>
    public string? Setting { get; } = setting;
}

/// <summary>A setting has a value the library cannot use. Message: "SETTING [VALUE]: FACT".</summary>
public sealed class InvalidSettingException(string setting, object? value, string fact)
    : VptException(value is null ? $"{setting}: {fact}" : $"{setting} {Format(value)}: {fact}", setting)
{
    public object? Value { get; } = value;
    /// <summary>What is wrong with the value, without the setting's name.</summary>
    public string Fact { get; } = fact;

    /// <summary>A value as messages print it (invariant culture).</summary>
    public static string Format(object v) => v is IFormattable f ? f.ToString(null, System.Globalization.CultureInfo.InvariantCulture) : v.ToString() ?? "";
}

/// <summary>
/// Two things that must agree do not (a checkpoint's tensor shapes and the architecture asked for, a task file and the
/// backbone it is given). <see cref="Settings"/> are the settings that decide the expected side, most likely first.
/// </summary>
public sealed class ConfigMismatchException(string fact, params string[] settings) : VptException(fact, settings.FirstOrDefault())
{
    public IReadOnlyList<string> Settings { get; } = settings;
}

/// <summary>A file or folder that is missing or unusable, named by path. Message: "PATH: FACT".</summary>
public sealed class InputFileException(string path, string fact, string? setting = null, Exception? inner = null)
    : VptException($"{path}: {fact}", setting, inner)
{
    public string Path { get; } = path;
    public string Fact { get; } = fact;
}

/// <summary>A checkpoint or task file that cannot be used as asked; the message names the file.</summary>
public sealed class CheckpointException(string message, string? setting = null) : VptException(message, setting);

/// <summary>A corrupt, missing or undecodable image, named by file. Message: "FILE: REASON".</summary>
public sealed class BadImageException(string file, string reason) : VptException($"{file}: {reason}")
{
    public string File { get; } = file;
    public string Reason { get; } = reason;
}

/// <summary>
/// The loss became NaN or infinite; training stopped before the optimizer step. <see cref="KeptCheckpointDir"/> holds
/// the last good checkpoint (null when training kept nothing on disk). Setting: "base-lr" (the usual cause).
/// </summary>
public sealed class TrainingDivergedException(string fact, string? keptCheckpointDir = null)
    : VptException(keptCheckpointDir is null ? fact : $"{fact}; the last good checkpoint is kept in {keptCheckpointDir}", "base-lr")
{
    public string? KeptCheckpointDir { get; } = keptCheckpointDir;
}

/// <summary>A task file was trained on other backbone weights (their sha256 differs). Setting: "backbone".</summary>
public sealed class BackboneMismatchException(string fact) : VptException(fact, "backbone");

/// <summary>A method needs backbone capabilities (described in <see cref="Missing"/>) the backbone's family does not offer.
/// Setting: "method".</summary>
public sealed class UnsupportedMethodException(string method, string family, IReadOnlyList<string> missing)
    : VptException($"method {method} needs {string.Join(" and ", missing)}, which the {family} backbone does not offer", "method")
{
    public string Method { get; } = method;
    public string Family { get; } = family;
    public IReadOnlyList<string> Missing { get; } = missing;
}
