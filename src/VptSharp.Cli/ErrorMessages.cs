namespace VptSharp.Cli;

/// <summary>
/// The one place library exceptions become CLI text: the library states the fact (Errors.cs); this adds the flag
/// that sets what the fact is about and the fix, so each failure still prints one helpful line.
/// </summary>
internal static class ErrorMessages
{
    /// <summary>Library setting names whose flag is spelled differently; every other setting S is the flag --S.</summary>
    static readonly Dictionary<string, string> Flags = new()
    {
        ["base-lr"] = "--lr",
        ["out-dir"] = "--out",
        ["tasks-folder"] = "--tasks",
    };

    public static string Flag(string setting) => Flags.TryGetValue(setting, out var f) ? f : "--" + setting;

    /// <summary>The line printed after "error: " for an exception the CLI expects (bad input, a refused combination).</summary>
    public static string For(Exception e) => e switch
    {
        InvalidSettingException s => s.Value is null ? $"{Flag(s.Setting!)}: {s.Fact}" : $"{Flag(s.Setting!)} {InvalidSettingException.Format(s.Value)}: {s.Fact}",
        ConfigMismatchException { Setting: "source" } => $"{e.Message}; pass a TFDS data dir as --from (or --source tfds)",
        ConfigMismatchException m when m.Settings.Count > 0 => $"{m.Message}; check {string.Join(" / ", m.Settings.Select(Flag))}",
        BadImageException => $"{e.Message}; fix or remove the file, or pass --skip-bad to skip such images",
        TrainingDivergedException => $"{e.Message}; lower --lr or --weight-decay",
        InputFileException { Setting: "tasks-folder" } => $"{e.Message}; pass --tasks DIR with .vpt files",
        InputFileException { Setting: "ensemble-file" } => $"{e.Message}; build one with 'vpt ensemble --out FILE a.vpt b.vpt ...'",
        InputFileException { Setting: "font-dir" } => $"{e.Message} or pass --font-dir",
        InputFileException { Setting: "sweep-plan" } => $"{e.Message}; make the plan with vpt sweep plan --out DIR",
        CheckpointException { Setting: "out-dir" } => $"{e.Message}, start a fresh --out folder",
        BackboneMismatchException => $"{e.Message}; pass --backbone with the original weights",
        InputFileException { Setting: "release-folder" } => $"{e.Message}; pass the folder the release was extracted to as --from",
        InputFileException { Setting: "tfds-folder" } => $"{e.Message}; pass that TFDS data dir as --from",
        InputFileException { Setting: "out-dir" } => $"{e.Message}; delete it or pass another --out",
        InputFileException { Setting: "reduce-zero-label" } => $"{e.Message}; if 0 means 'unlabelled', pass --reduce-zero-label",
        InputFileException { Setting: "task-file" } => $"{e.Message}; train one with 'vpt train ... --out DIR'",
        UnsupportedMethodException => $"{e.Message}; see 'vpt methods' for what each method needs",
        _ => e.Message,
    };
}
