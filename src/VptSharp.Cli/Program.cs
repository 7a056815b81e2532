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
root.Subcommands.Add(InferenceCommands.Ensemble());
root.Subcommands.Add(DemoCommand.Create());

return root.Parse(args).Invoke();
