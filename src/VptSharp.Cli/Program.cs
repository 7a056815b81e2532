using System.CommandLine;
using VptSharp.Cli;
using VptSharp.Hardware;

NativeHeap.KeepFreedMemory(); // before any tensor exists: freed activations are reused instead of page-faulted in again

var root = new RootCommand("VptSharp — Visual Prompt Tuning (Jia et al., ECCV 2022) for .NET: tune tiny task files on a frozen ViT.");
root.Subcommands.Add(TrainCommands.Train());
root.Subcommands.Add(TrainCommands.Pretrain());
root.Subcommands.Add(UseCommands.Eval());
root.Subcommands.Add(UseCommands.Predict());
root.Subcommands.Add(UseCommands.Info());
root.Subcommands.Add(UseCommands.Embed());
root.Subcommands.Add(UseCommands.Methods());
root.Subcommands.Add(ProtocolCommands.SweepCommand());
root.Subcommands.Add(ProtocolCommands.ReportCommand());
root.Subcommands.Add(ServeCommand.Create());
root.Subcommands.Add(LoadTest.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(AnalysisCommands.Tsne());
root.Subcommands.Add(InferenceCommands.Ensemble());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(DataCommands.Create());
root.Subcommands.Add(SegmentCommands.Create());

// One top-level handler: whatever escapes a command (or the parser) is one line and an exit code, never a stack trace.
AppDomain.CurrentDomain.UnhandledException += (_, e) =>
{
    Environment.Exit(Common.Report(e.ExceptionObject as Exception ?? new Exception(e.ExceptionObject?.ToString())));
};
try
{
    var parsed = root.Parse(args);
    if (parsed.Errors.Count > 0)
    {
        // The first error only (one line); the others usually follow from it.
        Console.Error.WriteLine($"error: {Common.OneLine(parsed.Errors[0].Message)} (run 'vpt {parsed.CommandResult.Command.Name} --help' for the options)");
        return ExitCodes.Usage;
    }
    return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (Exception e) { return Common.Report(e); }
