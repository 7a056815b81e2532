using System.CommandLine;
using VptSharp.Cli;

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

return root.Parse(args).Invoke();
